"""Shared fixtures: the GPU adapter (lavapipe in CI) and the SPEC T2 problem."""

import os

import numpy as np
import pytest

import frflow

T2 = dict(
    domain="euclidean",
    dim=1,
    reference={"kind": "gaussian", "mean": 0.0, "std": 1.0},
    sigma=1.0,
    epsilon=0.5,
    init={"kind": "gaussian", "mean": 0.8, "std": 1.5},
)


def t2(variant="B", n=2048, seed=1, **kw):
    """SPEC §7 T2's check problem: π = N(0, 1), σ = 1, ε = 0.5, μ₀ = N(0.8, 1.5²), no energy."""
    return frflow.Problem(**{**T2, **kw}, variant=variant, particles=n, seed=seed)


@pytest.fixture(scope="session")
def gpu_device():
    """The GPU adapter's name, or a skip; with FRFLOW_REQUIRE_GPU=1 (the test command) a failure."""
    try:
        names = [a["name"] for a in frflow.adapters()]
    except Exception as e:  # noqa: BLE001 - any failure to enumerate means no GPU
        names, reason = [], str(e)
    else:
        reason = "wgpu found no adapter"
    if not names:
        if os.environ.get("FRFLOW_REQUIRE_GPU") == "1":
            pytest.fail(f"FRFLOW_REQUIRE_GPU=1 but no GPU adapter opens: {reason}")
        pytest.skip(f"no GPU adapter: {reason}")
    return os.environ.get("FRFLOW_DEVICE") or None


def weighted_moments(x, w):
    w = w / w.sum()
    m = np.sum(w * x)
    return m, np.sum(w * (x - m) ** 2)
