"""frflow's errors as Python exceptions: ValueError subclasses with the field, value and allowed."""

import numpy as np
import pytest

import frflow
from conftest import t2


def test_invalid_value_carries_field_value_allowed():
    with pytest.raises(frflow.InvalidValueError) as e:
        t2(epsilon=-0.5)
    err = e.value
    assert isinstance(err, ValueError) and isinstance(err, frflow.FrflowError)
    assert (err.field, err.value, err.allowed) == ("kernel.epsilon", "-0.5", "a finite number > 0")
    assert str(err) == "invalid value for `kernel.epsilon`: -0.5 (a finite number > 0)"


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(variant="Z"), None),
        (dict(sigma=-1.0), "sigma"),
        (dict(reference={"kind": "uniform"}), "reference.kind"),
        (dict(dim=9), "domain.dim"),
        (dict(n=0), "particles.n"),
    ],
)
def test_bad_keywords(kw, field):
    with pytest.raises(frflow.FrflowError) as e:
        t2(**kw)
    if field is not None:
        assert isinstance(e.value, frflow.InvalidValueError) and e.value.field == field


def test_config_errors():
    with pytest.raises(frflow.ConfigError, match="unknown field"):
        frflow.Problem.from_toml("sigma = 1.0\nbogus = 2\n[domain]\nkind = 'torus'\ndim = 1\n")
    with pytest.raises(frflow.FileError):
        frflow.Problem.from_toml("no/such/config.toml")


def test_run_errors():
    p = t2("B", n=64)
    with pytest.raises(frflow.InvalidValueError) as e:
        frflow.run(p)
    assert e.value.field == "steps"
    for kw, field in [
        (dict(steps=5, h=-1.0), "time.h"),
        (dict(steps=5, scheme="rk4"), "scheme"),
        (dict(steps=5, engine="tpu"), "engine"),
        (dict(steps=5, every=0), "output.every"),
        (dict(final_time=-1.0), "time.final_time"),
    ]:
        with pytest.raises(frflow.InvalidValueError) as e:
            frflow.run(p, **kw)
        assert e.value.field == field, kw


def test_numerical_error_names_the_step():
    # Euler with a huge step makes a weight non-positive.
    with pytest.raises(frflow.NumericalError) as e:
        frflow.run(t2("A", n=64), steps=5, h=50.0, engine="cpu")
    assert e.value.step == 0 and "non-positive" in str(e.value)


def test_gpu_error_for_a_missing_adapter():
    with pytest.raises(frflow.GpuError):
        frflow.run(t2("B", n=64), steps=1, h=0.01, engine="gpu", device="no-such-adapter-xyz")


def test_callback_exception_propagates():
    def callback(d):
        if d["step"] >= 10:
            raise RuntimeError("from the callback")

    with pytest.raises(RuntimeError, match="from the callback"):
        frflow.run(t2("B", n=64), steps=100, h=0.01, every=5, callback=callback, engine="cpu")


def test_positions_shape_errors():
    with pytest.raises(frflow.InvalidValueError) as e:
        frflow.Problem(domain="torus", dim=2, sigma=1.0, epsilon=0.1, particles=np.zeros((10, 3)))
    assert e.value.field == "positions"
    with pytest.raises(frflow.InvalidValueError) as e:
        frflow.Problem(domain="torus", dim=1, sigma=1.0, epsilon=0.1, particles=np.array([0.1, np.inf]))
    assert e.value.field.startswith("positions")
