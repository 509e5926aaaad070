"""The README's Python example (SPEC T2) and its figure, docs/img/python_t2.png.

    python python/examples/t2_figure.py docs/img/python_t2.png
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import frflow  # noqa: E402

gauss = lambda x, m, v: np.exp(-((x - m) ** 2) / (2 * v)) / np.sqrt(2 * np.pi * v)  # noqa: E731
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
for variant, color in [("A", "tab:red"), ("B", "tab:blue")]:
    problem = frflow.Problem(domain="euclidean", dim=1, sigma=1.0, epsilon=0.5, variant=variant,
                             reference={"kind": "gaussian", "mean": 0.0, "std": 1.0},
                             particles=2048, init={"kind": "gaussian", "mean": 0.8, "std": 1.5}, seed=1)
    r = frflow.run(problem, final_time=4.0, h=0.01, every=10, engine="cpu")
    print(variant, r.mean, r.variance)  # SPEC T2: A 0.0115443, 0.798198; B 0.0132497, 1.040290
    x = np.sort(r.positions[:, 0])
    order = np.argsort(r.positions[:, 0])
    density = problem.n * r.weights[order] * gauss(x, 0.8, 1.5**2)  # μ_T(X_i) ≈ N w_i μ₀(X_i)
    left.plot(x, density, ".", ms=2, color=color, label=f"variant {variant}: N w_i μ₀(X_i)")
    left.plot(x, gauss(x, *dict(A=(0.0115443, 0.798198), B=(0.0132497, 1.040290))[variant]), color=color, lw=1)
    right.plot(r.trace["time"], r.trace["variance_0"], color=color, label=f"variant {variant}")
left.plot(x, gauss(x, 0.0, 1.0), "k--", lw=1, label="π = N(0, 1)")
left.set(xlabel="x", ylabel="density at T = 4", xlim=(-4, 4), title="particles vs the mean-field flow (lines)")
right.axhline(1.0, color="k", ls="--", lw=1, label="τ² = 1 (B's stationary variance)")
right.axhline(0.75, color="gray", ls=":", lw=1, label="τ² − ε² = 0.75 (A's)")
right.set(xlabel="t", ylabel="weighted variance", title="r.trace['variance_0']")
left.legend(fontsize=8)
right.legend(fontsize=8)
fig.tight_layout()
fig.savefig(sys.argv[1] if len(sys.argv) > 1 else "python_t2.png", dpi=110)
