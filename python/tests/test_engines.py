"""The CPU and GPU engines agree (the GPU on lavapipe in CI)."""

import numpy as np
import pytest

import frflow
from conftest import t2


@pytest.mark.parametrize("variant", ["A", "B", "C"])
def test_cpu_and_gpu_agree_on_t2(gpu_device, variant):
    p = t2(variant, n=512)
    cpu = frflow.run(p, final_time=1.0, h=0.02, engine="cpu")
    gpu = frflow.run(p, final_time=1.0, h=0.02, engine="gpu", device=gpu_device)
    assert cpu.engine.startswith("cpu") and gpu.engine.startswith("gpu")
    assert gpu.step == cpu.step == 50
    # f32 kernel sums on the GPU: relative agreement of the weights to ~1e-5.
    np.testing.assert_allclose(gpu.weights, cpu.weights, rtol=1e-4)
    np.testing.assert_allclose(gpu.mean, cpu.mean, atol=1e-5)
    np.testing.assert_allclose(gpu.variance, cpu.variance, atol=1e-5)
    np.testing.assert_array_equal(gpu.positions, cpu.positions)
    assert len(gpu.trace["step"]) == len(cpu.trace["step"])


def test_cpu_and_gpu_agree_on_the_torus_with_an_interaction(gpu_device):
    p = frflow.Problem(
        domain="torus", dim=2, sigma=0.3, epsilon=0.08, variant="C", particles=400, seed=5,
        energies=[{"kind": "interaction", "strength": 1.0, "width": 0.2},
                  {"kind": "potential", "potential": "cosine", "amplitude": 1.0, "frequency": 2}],
    )
    cpu = frflow.run(p, steps=60, h=0.05, engine="cpu")
    gpu = frflow.run(p, steps=60, h=0.05, engine="gpu", device=gpu_device)
    np.testing.assert_allclose(gpu.weights, cpu.weights, rtol=1e-4)
    assert gpu.diagnostics["energy"] == pytest.approx(cpu.diagnostics["energy"], rel=1e-5)


def test_auto_engine_runs():
    r = frflow.run(t2("B", n=128), steps=5, h=0.01, engine="auto")
    assert r.engine.startswith(("cpu", "gpu"))
