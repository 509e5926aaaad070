"""A Python-defined potential against the built-in one, on both engines."""

import numpy as np
import pytest

import frflow

QUADRATIC = {"kind": "potential", "potential": "quadratic", "strength": 2.0, "center": 0.5}


def python_quadratic(calls):
    def U(x):
        calls.append(x.shape)
        return 0.5 * 2.0 * np.sum((x - 0.5) ** 2, axis=1)

    return U


def t2_with(energy, variant="B", n=512):
    return frflow.Problem(
        domain="euclidean", dim=2, reference={"kind": "gaussian", "mean": 0.0, "std": 1.0}, sigma=1.0, epsilon=0.5,
        variant=variant, energies=[energy], particles=n, init={"kind": "gaussian", "mean": 0.8, "std": 1.5}, seed=7,
    )


@pytest.mark.parametrize("variant", ["A", "B", "C", "D"])
def test_python_potential_equals_builtin_on_cpu(variant):
    calls = []
    builtin = t2_with(QUADRATIC, variant, n=256)
    python = t2_with(python_quadratic(calls), variant, n=256)
    np.testing.assert_array_equal(python.positions, builtin.positions)
    rb = frflow.run(builtin, final_time=1.0, h=0.02, engine="cpu")
    rp = frflow.run(python, final_time=1.0, h=0.02, engine="cpu")
    assert np.max(np.abs(rp.weights - rb.weights)) <= 1e-12
    assert np.max(np.abs(rp.log_weights - rb.log_weights)) <= 1e-12
    assert rp.diagnostics["f_energy"] == pytest.approx(rb.diagnostics["f_energy"], abs=1e-12)
    # Called once, on all N positions at once (positions never move), however many runs follow.
    frflow.run(python, steps=3, h=0.02, engine="cpu")
    assert calls == [(256, 2)]


def test_python_potential_on_the_torus_and_as_a_dict_entry():
    def U(x):  # minimum image, as the built-in quadratic on the torus
        d = x - 0.3
        d -= np.round(d)
        return np.sum(d**2, axis=1)

    kw = dict(domain="torus", dim=2, sigma=0.5, epsilon=0.1, variant="C", particles=256, seed=3)
    builtin = frflow.Problem(energies=[{"kind": "potential", "potential": "quadratic", "strength": 2.0, "center": 0.3}], **kw)
    python = frflow.Problem(energies=[{"kind": "potential", "potential": U}], **kw)
    rb = frflow.run(builtin, steps=50, h=0.05, engine="cpu")
    rp = frflow.run(python, steps=50, h=0.05, engine="cpu")
    assert np.max(np.abs(rp.weights - rb.weights)) <= 1e-12


@pytest.mark.parametrize("variant", ["A", "B"])
def test_python_gibbs_reference_equals_builtin(variant):
    # π ∝ exp(−U_π): A evaluates U_π at the particles only (the vectorised call), B also at the
    # quadrature nodes of K_ε π (one point at a time, from the run's threads, taking the GIL).
    kw = dict(domain="torus", dim=1, sigma=1.0, epsilon=0.05, variant=variant, particles=300, seed=2)
    builtin = frflow.Problem(reference={"kind": "gibbs", "potential": {"kind": "cosine", "amplitude": 2.0}}, **kw)
    python = frflow.Problem(
        reference={"kind": "gibbs", "potential": lambda x: -2.0 * np.cos(2 * np.pi * x[:, 0])}, **kw
    )
    rb = frflow.run(builtin, steps=40, h=0.01, engine="cpu")
    rp = frflow.run(python, steps=40, h=0.01, engine="cpu")
    assert np.max(np.abs(rp.weights - rb.weights)) <= 1e-12


def test_python_potential_on_the_gpu(gpu_device):
    calls = []
    builtin = t2_with(QUADRATIC, "C", n=256)
    python = t2_with(python_quadratic(calls), "C", n=256)
    rb = frflow.run(builtin, steps=50, h=0.02, engine="gpu", device=gpu_device)
    rp = frflow.run(python, steps=50, h=0.02, engine="gpu", device=gpu_device)
    assert rp.engine.startswith("gpu")
    # U is evaluated in f64 on the host either way, so the GPU sees the same numbers.
    np.testing.assert_allclose(rp.weights, rb.weights, rtol=1e-6, atol=0)
    cpu = frflow.run(python, steps=50, h=0.02, engine="cpu")
    np.testing.assert_allclose(rp.weights, cpu.weights, rtol=1e-4)
    assert calls == [(256, 2)]


def test_bad_python_potentials_are_errors():
    with pytest.raises(frflow.InvalidValueError) as e:
        t2_with(lambda x: np.zeros((x.shape[0], 2)))
    assert e.value.field == "energy[0].potential" and "shape (512,)" in e.value.allowed
    with pytest.raises(ZeroDivisionError):
        t2_with(lambda x: 1 / 0)
    # A value that is not finite is reported with the potential and the particle, at run time.
    p = t2_with(lambda x: np.where(x[:, 0] > 1.0, np.nan, 0.0))
    with pytest.raises(frflow.FrflowError, match="Python function"):
        frflow.run(p, steps=1, h=0.01, engine="cpu")
