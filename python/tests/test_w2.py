"""frflow.w2 against closed forms."""

import numpy as np
import pytest

import frflow


def test_diracs_and_translations():
    # W₂(δ_a, δ_b) = |a − b|, and a translate of a cloud is at distance |shift|.
    assert frflow.w2([[0.0, 0.0]], None, [[3.0, 4.0]], None) == pytest.approx(5.0, abs=1e-12)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 2))
    shift = np.array([0.3, -0.4])
    assert frflow.w2(x, None, x + shift, None, "exact") == pytest.approx(0.5, abs=1e-9)
    assert frflow.w2(x, None, x + shift, None, "sinkhorn") == pytest.approx(0.5, abs=5e-3)
    assert frflow.w2(x, None, x, None, "exact") == pytest.approx(0.0, abs=1e-9)


def test_one_d_quantiles():
    # Two-point clouds on the line: monotone coupling, W₂² = Σ mass · distance².
    x, wx = np.array([0.0, 1.0]), np.array([0.5, 0.5])
    y, wy = np.array([0.0, 3.0]), np.array([0.25, 0.75])
    # Quantile coupling: 0.25 (0→0), 0.25 (0→3), 0.5 (1→3): W₂² = 0.25·9 + 0.5·4 = 4.25.
    assert frflow.w2(x, wx, y, wy, "1d", squared=True) == pytest.approx(4.25, abs=1e-12)
    # The network simplex is optimal up to reduced costs of ~1e-14 of the largest potential.
    assert frflow.w2(x, wx, y, wy, "exact", squared=True) == pytest.approx(4.25, abs=1e-10)
    # Weights are normalised.
    assert frflow.w2(x, 2 * wx, y, 7 * wy, "1d", squared=True) == pytest.approx(4.25, abs=1e-12)


def test_gaussian_closed_form():
    # W₂(N(m₁, s₁²), N(m₂, s₂²))² = (m₁ − m₂)² + (s₁ − s₂)², with the clouds at the quantiles.
    u = (np.arange(2000) + 0.5) / 2000
    from statistics import NormalDist

    z = np.array([NormalDist().inv_cdf(p) for p in u])
    a, b = 0.5 + 1.0 * z, -1.0 + 2.0 * z
    exact = (0.5 + 1.0) ** 2 + (1.0 - 2.0) ** 2
    assert frflow.w2(a, None, b, None, "1d", squared=True) == pytest.approx(exact, rel=1e-2)


def test_torus_minimum_image():
    # On the unit circle 0.05 and 0.95 are 0.1 apart.
    assert frflow.w2([0.05], None, [0.95], None, "exact", side=1.0) == pytest.approx(0.1, abs=1e-12)
    assert frflow.w2([0.05], None, [0.95], None, "exact") == pytest.approx(0.9, abs=1e-12)


def test_sinkhorn_close_to_exact_in_2d():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(150, 2)), rng.normal(0.5, 1.2, size=(170, 2))
    wx, wy = rng.uniform(0.5, 1.5, 150), rng.uniform(0.5, 1.5, 170)
    exact = frflow.w2(x, wx, y, wy, "exact", squared=True)
    sink = frflow.w2(x, wx, y, wy, "sinkhorn", squared=True)
    assert sink == pytest.approx(exact, rel=2e-2)


def test_w2_errors():
    with pytest.raises(frflow.InvalidValueError) as e:
        frflow.w2([0.0], None, [1.0], None, "emd")
    assert e.value.field == "method"
    with pytest.raises(frflow.InvalidValueError) as e:
        frflow.w2([0.0], [-1.0], [1.0], None)
    assert e.value.field.startswith("wx")
    with pytest.raises(frflow.InvalidValueError):
        frflow.w2(np.zeros((3, 2)), None, np.zeros((3, 2)), None, "1d")
