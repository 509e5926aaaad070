"""SPEC §7 T2 through Python: the kernelized Gaussian flow's check values (λ = 0, T = 4)."""

import numpy as np
import pytest

import frflow
from conftest import t2, weighted_moments

# SPEC T2 check values at T = 4 (the mean-field flow's closed form).
CHECK = {"A": (0.0115443, 0.798198), "B": (0.0132497, 1.040290)}


@pytest.mark.parametrize("variant", ["A", "B"])
def test_t2_check_values(variant):
    # 4 seeds × N = 2048, Euler h = 0.01. Tolerance as the Rust test's: the O(h) Euler floor (4e-3)
    # plus the finite-N floor 5/(N ε) ≈ 5e-3, plus 4 standard errors over seeds; far below the
    # A-versus-B gap in the variance (0.80 vs 1.04).
    means, variances = [], []
    for seed in range(4):
        r = frflow.run(t2(variant, seed=seed), final_time=4.0, h=0.01, engine="cpu", every=100)
        assert r.termination == "final_time" and r.time == pytest.approx(4.0)
        assert abs(r.weights.sum() - 1.0) < 1e-12
        m, v = weighted_moments(r.positions[:, 0], r.weights)
        assert m == pytest.approx(r.mean[0], abs=1e-12) and v == pytest.approx(r.variance[0], abs=1e-12)
        means.append(m)
        variances.append(v)
    m0, v0 = CHECK[variant]
    floor = 4e-3 + 5.0 / (2048 * 0.5)
    se = lambda v: np.std(v, ddof=1) / np.sqrt(len(v))  # noqa: E731
    assert abs(np.mean(means) - m0) <= 4 * se(means) + floor, (means, m0)
    assert abs(np.mean(variances) - v0) <= 4 * se(variances) + floor, (variances, v0)


def test_toml_and_keywords_agree(tmp_path):
    # examples/gaussian_t2.toml is T2 with variant B, N = 2048, seed 1, h = 0.01 to T = 4.
    toml = """
seed = 1
sigma = 1.0
[domain]
kind = "euclidean"
dim = 1
[reference]
kind = "gaussian"
mean = 0.0
std = 1.0
[kernel]
epsilon = 0.5
variant = "B"
[particles]
n = 256
init = { kind = "gaussian", mean = 0.8, std = 1.5 }
[time]
h = 0.01
final_time = 0.5
[output]
every = 10
"""
    path = tmp_path / "t2.toml"
    path.write_text(toml)
    from_file = frflow.Problem.from_toml(path)
    from_text = frflow.Problem.from_toml(toml)
    keywords = t2("B", n=256, seed=1)
    assert from_file.info["final_time"] == 0.5
    results = [frflow.run(p, engine="cpu") for p in (from_file, from_text)]
    results.append(frflow.run(keywords, engine="cpu", final_time=0.5, h=0.01, every=10))
    for r in results[1:]:
        np.testing.assert_array_equal(r.positions, results[0].positions)
        np.testing.assert_array_equal(r.weights, results[0].weights)
    assert results[0].step == 50


def test_result_arrays_and_trace():
    p = t2("A", n=300)
    r = frflow.run(p, steps=30, h=0.02, engine="cpu", every=10)
    assert r.weights.shape == (300,) and r.log_weights.shape == (300,) and r.positions.shape == (300, 1)
    np.testing.assert_allclose(np.exp(r.log_weights), r.weights, rtol=1e-15)
    np.testing.assert_array_equal(r.positions, p.positions)
    trace = r.trace
    assert list(np.asarray(trace["step"])) == [0, 10, 20, 30]
    for column in ["time", "energy", "f_energy", "mass", "ess", "max_abs_rate", "max_rate", "mean_0", "variance_0"]:
        assert len(trace[column]) == 4
    assert r.termination == "max_steps"


def test_positions_from_numpy_keep_their_order():
    rng = np.random.default_rng(0)
    x = rng.normal(0.8, 1.5, size=(400, 1))
    p = frflow.Problem(
        domain="euclidean", dim=1, reference={"kind": "gaussian", "mean": 0.0, "std": 1.0}, sigma=1.0, epsilon=0.5,
        variant="B", particles=x,
    )
    np.testing.assert_array_equal(p.positions, x)
    r = frflow.run(p, final_time=1.0, h=0.05, engine="cpu")
    np.testing.assert_array_equal(r.positions, x)
    # The weights follow the positions: the particles nearest π's mode gain weight.
    assert r.weights[np.argmin(np.abs(x[:, 0]))] > r.weights[np.argmax(np.abs(x[:, 0]))]


def test_callback_sees_diagnostics_and_can_stop():
    seen = []

    def callback(d):
        seen.append(d["step"])
        assert set(d) >= {"step", "time", "energy", "mass", "ess", "mean", "variance"}
        if d["step"] >= 20:
            return False

    r = frflow.run(t2("B", n=256), steps=1000, h=0.01, every=5, callback=callback, engine="cpu")
    assert r.termination == "stopped" and r.step == 20 and r.stop_reason
    assert seen == [0, 5, 10, 15, 20]


def test_resume_continues_bit_for_bit():
    p = t2("B", n=256)
    whole = frflow.run(p, steps=40, h=0.02, engine="cpu")
    half = frflow.run(p, steps=20, h=0.02, engine="cpu")
    rest = frflow.run(p, steps=40, h=0.02, engine="cpu", resume=half)
    assert rest.step == 40
    np.testing.assert_array_equal(rest.weights, whole.weights)
