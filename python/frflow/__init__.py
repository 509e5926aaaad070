"""frflow: kernelized Fisher–Rao gradient flows for entropic mean-field optimisation.

Minimise V(m) = F(m) + σ·D(m | π) over probability measures m with N particles whose positions
stay fixed and whose weights follow dw_i/dt = −w_i a_ε(μᴺ, X_i), on the f64 CPU engine or the
wgpu GPU engine of the Rust crate frflow.

>>> import frflow
>>> problem = frflow.Problem(domain="euclidean", dim=1, reference={"kind": "gaussian", "mean": 0, "std": 1},
...                          sigma=1.0, epsilon=0.5, variant="B", particles=512,
...                          init={"kind": "gaussian", "mean": 0.8, "std": 1.5}, seed=1)
>>> result = frflow.run(problem, final_time=1.0, h=0.05, engine="cpu")
>>> float(result.weights.sum())  # doctest: +ELLIPSIS
1.0...

Errors are :class:`FrflowError` (a :class:`ValueError`) or one of its subclasses; a bad value is an
:class:`InvalidValueError` with ``field``, ``value`` and ``allowed`` attributes.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from . import _frflow
from ._frflow import (
    ConfigError,
    DataError,
    FileError,
    FrflowError,
    GpuError,
    InvalidValueError,
    NumericalError,
)

__version__ = _frflow.__version__

__all__ = [
    "Problem",
    "Result",
    "SweepResult",
    "Interrupted",
    "run",
    "w2",
    "chaos",
    "bandwidth",
    "adapters",
    "FrflowError",
    "InvalidValueError",
    "ConfigError",
    "DataError",
    "NumericalError",
    "GpuError",
    "FileError",
]

# A Python potential's stand-in in the config (U = 0), replaced by the function once the
# positions are known.
_PLACEHOLDER = {"potential": "quadratic", "strength": 0.0}


def _invalid(field: str, value: Any, allowed: str) -> InvalidValueError:
    """An InvalidValueError as the Rust side makes them (same message, same attributes)."""
    err = InvalidValueError(f"invalid value for `{field}`: {value} ({allowed})")
    err.field, err.value, err.allowed = field, str(value), allowed
    return err


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or any KeyboardInterrupt) stopped a run.

    A subclass of :class:`KeyboardInterrupt`, so ``except KeyboardInterrupt`` catches it. The state
    reached is intact: ``result`` is the :class:`Result` at the step where the run stopped
    (``termination == "interrupted"``); ``frflow.run(problem, ..., resume=err.result)`` continues
    from there.
    """

    def __init__(self, result: "Result"):
        super().__init__(f"run interrupted at step {result.step} (t = {result.time:g}); the state is in .result")
        self.result = result


def _jsonable(value: Any, where: str) -> Any:
    """Config values as JSON: numpy arrays and scalars become lists and numbers."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items() if v is not None}
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), where)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, bool, int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise _invalid(where, value, "finite numbers only")
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise _invalid(where, repr(value), "numbers, strings, lists or dicts")


class Problem:
    """A checked problem: what is minimised, the fixed particle positions, and the default engine.

    Build it with keywords mirroring the Rust ``ModelSpec`` (below), or from a config file's TOML
    with :meth:`from_toml`. Every value is checked here; a bad one raises
    :class:`InvalidValueError` naming the config key (e.g. ``kernel.epsilon``).

    Parameters
    ----------
    domain : {"euclidean", "torus"} or dict
        The domain: a kind with ``dim`` (and ``side`` for the torus, default 1), or the config's
        ``[domain]`` table as a dict (``{"kind": "torus", "dim": 2, "side": 1.0}``).
    sigma : float
        σ ≥ 0, the weight of the divergence.
    epsilon : float
        ε > 0, the width of the smoothing kernel K_ε.
    variant : {"A", "B", "C", "D", "D'", "exact"}
        The kernelization (SPEC §3); default "B".
    reference : None, "uniform" or dict
        π: uniform (torus only; the default), ``{"kind": "gaussian", "mean": m, "std": s}`` or
        ``{"kind": "gibbs", "potential": {...} or U}`` with U a Python function as in ``energies``.
    divergence : {"kl", "chi2"}
        D; default "kl".
    energies : sequence
        F's terms: dicts as the config's ``[[energy]]`` tables (``{"kind": "potential",
        "potential": "quadratic", "strength": 2.0, "center": 1.5}``, ``{"kind": "mmd", ...}``,
        …), or a Python function ``U(x: ndarray (N, d)) -> ndarray (N,)`` for ∫U dm (also as
        ``{"kind": "potential", "potential": U}``). A Python U is called once, on all N
        positions at once (they never move), and works on both engines. As a Gibbs reference's
        potential with variants B and D′ it is also needed at the quadrature nodes around each
        particle, where it is called one point at a time (slow for large N).
    particles : int, array_like (N, d) or dict
        N particles drawn from μ₀ = ``init`` with ``seed``, or the positions themselves (an N × d
        array, kept in its order; on a torus wrapped into the cell), or the config's
        ``[particles]`` table.
    init : dict, optional
        μ₀ when ``particles`` is a count: ``{"kind": "gaussian", "mean": m, "std": s}``,
        ``{"kind": "uniform", "low": a, "high": b}`` or ``{"kind": "mixture", "components": [...]}``.
    seed : int
        Seed of the positions (and default seeds of generated data).
    engine : {"auto", "cpu", "gpu"}
        The default engine of :func:`run`. "auto" takes a hardware GPU when there is one, else
        the CPU engine.
    device : str, optional
        The GPU adapter (name, kind or index), e.g. "llvmpipe".
    quadrature, cutoff : optional
        The config's ``kernel.quadrature`` and ``kernel.cutoff`` values.
    """

    def __init__(
        self,
        *,
        domain: Union[str, Mapping[str, Any]],
        sigma: float,
        epsilon: float,
        variant: str = "B",
        reference: Union[None, str, Mapping[str, Any]] = None,
        divergence: str = "kl",
        energies: Sequence[Union[Mapping[str, Any], Callable[[np.ndarray], np.ndarray]]] = (),
        particles: Union[int, np.ndarray, Mapping[str, Any]] = 1024,
        init: Optional[Mapping[str, Any]] = None,
        seed: int = 0,
        dim: Optional[int] = None,
        side: Optional[float] = None,
        engine: str = "auto",
        device: Optional[str] = None,
        quadrature: Optional[Mapping[str, Any]] = None,
        cutoff: Any = None,
    ) -> None:
        potentials = []
        if isinstance(domain, str):
            domain = {"kind": domain, "dim": 1 if dim is None else dim, "side": side}
        elif dim is not None or side is not None:
            raise _invalid("dim", dim if dim is not None else side, "dim and side inside the domain dict, or domain as a kind")
        if reference is None:
            reference = {"kind": "uniform"}
        elif isinstance(reference, str):
            reference = {"kind": reference}
        reference = dict(reference)
        if callable(reference.get("potential")):
            potentials.append(("reference", 0, reference["potential"]))
            reference["potential"] = {"kind": "quadratic", "strength": 0.0}
        terms = []
        for i, term in enumerate(energies):
            if callable(term):
                term = {"kind": "potential", "potential": term}
            term = dict(term)
            if callable(term.get("potential")):
                potentials.append(("energy", i, term["potential"]))
                term = {"kind": "potential", **_PLACEHOLDER}
            terms.append(term)
        positions = None
        if isinstance(particles, Mapping):
            particles_table = dict(particles)
        elif isinstance(particles, (int, np.integer)) and not isinstance(particles, bool):
            particles_table = {"n": int(particles)}
        else:
            positions = np.ascontiguousarray(particles, dtype=np.float64)
            if positions.ndim == 1 and domain.get("dim") == 1:
                positions = positions.reshape(-1, 1)
            particles_table = {"n": max(1, positions.shape[0]) if positions.ndim == 2 else 1}
            if init is None:  # draws that the given positions replace: any valid μ₀ will do
                init = {"kind": "gaussian", "mean": 0.0, "std": 1.0}
        if init is not None:
            particles_table["init"] = init
        kernel = {"epsilon": epsilon, "variant": variant, "quadrature": quadrature, "cutoff": cutoff}
        config = {
            "seed": seed,
            "engine": engine,
            "device": device,
            "sigma": sigma,
            "divergence": divergence,
            "domain": domain,
            "reference": reference,
            "kernel": kernel,
            "energy": terms,
            "particles": particles_table,
        }
        text = json.dumps(_jsonable(config, "problem"), allow_nan=False)
        if positions is not None and positions.ndim != 2:
            raise _invalid("positions", f"an array of shape {positions.shape}", "an array of shape (N, d)")
        self._core = _frflow.ProblemCore(text, "<keywords>", os.getcwd(), False, positions, potentials)
        self._engine: Optional[str] = None
        self._device: Optional[str] = None

    @classmethod
    def from_toml(
        cls,
        text_or_path: Union[str, "os.PathLike[str]"],
        *,
        positions: Optional[np.ndarray] = None,
        engine: Optional[str] = None,
        device: Optional[str] = None,
    ) -> "Problem":
        """A problem from a config file (a path) or its TOML text.

        The config is the CLI's (see the README's configuration reference); its ``[time]`` and
        ``[output]`` give :func:`run`'s defaults. Relative data paths resolve against the file's
        directory (the working directory for text). ``positions`` (N × d) replace the sampled ones;
        ``engine`` and ``device`` override the config's.
        """
        text, origin, base = _read_text(text_or_path)
        self = cls.__new__(cls)
        if positions is not None:
            positions = np.ascontiguousarray(positions, dtype=np.float64)
            if positions.ndim == 1:
                positions = positions.reshape(-1, 1)
        self._core = _frflow.ProblemCore(text, origin, base, True, positions, [])
        self._engine = engine
        self._device = device
        return self

    @property
    def positions(self) -> np.ndarray:
        """The fixed positions, an N × d float64 array (a copy)."""
        return self._core.positions

    @property
    def n(self) -> int:
        """N, the number of particles."""
        return self._core.n

    @property
    def dim(self) -> int:
        """d, the dimension."""
        return self._core.dim

    @property
    def info(self) -> Dict[str, Any]:
        """The main settings: variant, sigma, epsilon, divergence, domain, energies, engine, and
        the config's run options (steps, final_time, tolerance, every) where it gave them."""
        return self._core.info()

    def __repr__(self) -> str:
        i = self.info
        return (
            f"frflow.Problem(N={self.n}, d={self.dim}, domain={i['domain']}, variant={i['variant']}, "
            f"sigma={i['sigma']}, epsilon={i['epsilon']}, energies={i['energies']})"
        )


def _read_text(text_or_path: Union[str, "os.PathLike[str]"]):
    """(text, origin, base directory) of a path or of TOML text."""
    if isinstance(text_or_path, os.PathLike) or (
        isinstance(text_or_path, str) and "\n" not in text_or_path and "=" not in text_or_path
    ):
        path = Path(text_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise FileError(f"{path}: {e.strerror or e}") from e
        return text, str(path), str(path.parent if str(path.parent) else ".")
    if not isinstance(text_or_path, str):
        raise _invalid("text_or_path", repr(text_or_path), "TOML text or a path")
    return text_or_path, "<string>", os.getcwd()


def _table(rows: Sequence[Mapping[str, Any]]):
    """Rows of (possibly nested) dicts as a table: a pandas DataFrame when pandas is installed,
    else a dict of numpy columns. Nested dicts flatten to ``outer_inner`` columns."""

    def flat(row, prefix=""):
        out = {}
        for k, v in row.items():
            if isinstance(v, Mapping):
                out.update(flat(v, f"{prefix}{k}_"))
            else:
                out[f"{prefix}{k}"] = v
        return out

    flats = [flat(r) for r in rows]
    keys = []
    for f in flats:
        keys += [k for k in f if k not in keys]
    columns = {}
    for k in keys:
        values = [f.get(k) for f in flats]
        numeric = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)
        if numeric and any(v is None for v in values):
            values = [math.nan if v is None else v for v in values]
        if numeric or all(isinstance(v, str) for v in values):
            columns[k] = np.asarray(values)
        else:
            columns[k] = np.asarray(values, dtype=object)
    return _frame(columns)


def _frame(columns: Dict[str, np.ndarray]):
    try:
        import pandas
    except ImportError:
        return columns
    return pandas.DataFrame(columns)


class Result:
    """What :func:`run` returns.

    Attributes
    ----------
    weights, log_weights : ndarray (N,)
        The final weights w_i (summing to 1) and their logarithms, in the particles' order.
    positions : ndarray (N, d)
        The (fixed) positions, in the same order.
    trace : pandas.DataFrame or dict of ndarray
        The diagnostics every ``every`` steps and at the end: step, time, energy (V; NaN for the
        variants A and B), f_energy (F), mass, ess, max_abs_rate, max_rate, mean_k, variance_k,
        truncation_bound. A DataFrame when pandas is installed, else a dict of numpy columns.
    termination : str
        Why it stopped: "max_steps", "final_time", "stationary", "stopped" (the callback
        returned False; ``stop_reason`` says so) or "interrupted".
    step, time : int, float
        Steps taken (since t = 0) and the flow time reached.
    diagnostics : dict
        The final state's diagnostics (the trace's last row, with ``mean`` and ``variance``
        arrays).
    engine : str
        The engine that ran, e.g. ``cpu-f64 (2 threads)`` or ``gpu (llvmpipe …)``.
    wall_seconds : float
        Wall-clock seconds of the run.
    """

    def __init__(self, raw: Dict[str, Any]):
        self.weights: np.ndarray = raw["weights"]
        self.log_weights: np.ndarray = raw["log_weights"]
        self.positions: np.ndarray = raw["positions"]
        self.trace = _frame(raw["trace"])
        self.termination: str = raw["termination"]
        self.stop_reason: Optional[str] = raw["stop_reason"]
        self.step: int = raw["step"]
        self.time: float = raw["time"]
        self.diagnostics: Dict[str, Any] = raw["diagnostics"]
        self.engine: str = raw["engine"]
        self.wall_seconds: float = raw["wall_seconds"]
        self.steps_this_run: int = raw["steps_this_run"]

    @property
    def mean(self) -> np.ndarray:
        """The weighted mean of each coordinate (d,)."""
        return self.diagnostics["mean"]

    @property
    def variance(self) -> np.ndarray:
        """The weighted variance of each coordinate (d,)."""
        return self.diagnostics["variance"]

    def __repr__(self) -> str:
        return (
            f"frflow.Result(termination={self.termination!r}, step={self.step}, time={self.time:g}, "
            f"N={self.weights.shape[0]}, ess={self.diagnostics['ess']:.4g}, engine={self.engine!r})"
        )


def run(
    problem: Problem,
    *,
    steps: Optional[int] = None,
    final_time: Optional[float] = None,
    tolerance: Optional[float] = None,
    h: Union[float, str, None] = None,
    scheme: Optional[str] = None,
    every: Optional[int] = None,
    callback: Optional[Callable[[Dict[str, Any]], Optional[bool]]] = None,
    engine: Optional[str] = None,
    device: Optional[str] = None,
    resume: Optional[Result] = None,
) -> Result:
    """Runs the flow of ``problem`` from uniform weights (or from ``resume``) and returns a :class:`Result`.

    Parameters
    ----------
    steps, final_time, tolerance
        When to stop: after this many steps (counted from t = 0), at this flow time (the last
        step is shortened to land on it), or once max_i |a_i| < tolerance. At least one is
        needed, unless the problem's TOML config gave them (keywords replace the config's three).
    h : float or "auto"
        The step size (default: the config's, or "auto": the largest stable step × 0.5, at
        most 0.1).
    scheme : {"euler", "exponential"}
        The update rule (default: the config's, or "euler").
    every : int
        Diagnostics (the trace's rows, the callback, the stationarity test) every this many
        steps (default: the config's ``output.every``, or 10).
    callback : callable, optional
        ``callback(diagnostics: dict)`` at step 0 and every ``every`` steps; returning ``False``
        ends the run with termination "stopped". An exception it raises ends the run and
        propagates.
    engine : {"cpu", "gpu", "auto"}, optional
        Overrides the problem's engine.
    device : str, optional
        The GPU adapter (name, kind or index), e.g. "llvmpipe".
    resume : Result, optional
        Continue from a previous result of this problem (its weights, step and time).

    The run releases the GIL. Ctrl-C stops it at the next diagnostics step and raises
    :class:`Interrupted` (a KeyboardInterrupt) carrying the state reached in ``.result``.
    """
    if not isinstance(problem, Problem):
        raise _invalid("problem", type(problem).__name__, "a frflow.Problem")
    state = None
    if resume is not None:
        state = (np.ascontiguousarray(resume.log_weights, dtype=np.float64), int(resume.step), float(resume.time))
    for name, value in (("steps", steps), ("every", every)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
            raise _invalid(name, repr(value), "an integer ≥ 0")
    raw = _frflow.run(
        problem._core,
        engine=engine or problem._engine,
        device=device or problem._device,
        steps=None if steps is None else int(steps),
        final_time=None if final_time is None else float(final_time),
        tolerance=None if tolerance is None else float(tolerance),
        h=h,
        scheme=scheme,
        every=None if every is None else int(every),
        callback=callback,
        resume=state,
    )
    result = Result(raw)
    if raw["interrupted"]:
        raise Interrupted(result)
    return result


def _points(a: Any, name: str) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2:
        raise _invalid(name, f"an array of shape {a.shape}", "shape (n, d) or (n,)")
    return a


def w2(
    x: np.ndarray,
    wx: Optional[np.ndarray] = None,
    y: Optional[np.ndarray] = None,
    wy: Optional[np.ndarray] = None,
    method: str = "exact",
    *,
    side: Optional[float] = None,
    epsilon: Optional[float] = None,
    squared: bool = False,
) -> float:
    """The Wasserstein-2 distance between two weighted point clouds, in POT's spirit.

    Parameters
    ----------
    x, y : array_like (n, d) and (m, d)
        The points (a 1-D array is n points on the line).
    wx, wy : array_like (n,) and (m,), optional
        Their weights (normalised here; default uniform).
    method : {"exact", "sinkhorn", "1d"}
        "exact": the optimal transport by a network simplex (n·m up to a few million pairs);
        "sinkhorn": the debiased Sinkhorn divergence S_ε (an estimate of W₂² for large clouds);
        "1d": the exact quantile formula on the line (d = 1).
    side : float, optional
        The torus side: the cost is then the minimum-image distance on [0, side)^d.
    epsilon : float, optional
        The Sinkhorn regularisation (default: 1e-3 × the mean cost).
    squared : bool
        Return W₂² instead of W₂.
    """
    if y is None:
        raise _invalid("y", None, "the second cloud, an array (m, d)")
    x, y = _points(x, "x"), _points(y, "y")
    wx = np.full(x.shape[0], 1.0 / max(1, x.shape[0])) if wx is None else np.ascontiguousarray(wx, dtype=np.float64).ravel()
    wy = np.full(y.shape[0], 1.0 / max(1, y.shape[0])) if wy is None else np.ascontiguousarray(wy, dtype=np.float64).ravel()
    value = _frflow.w2_squared(x, wx, y, wy, method, side=side, epsilon=epsilon)
    return value if squared else math.sqrt(max(value, 0.0))


class SweepResult:
    """What :func:`chaos` and :func:`bandwidth` return: their summary tables.

    Attributes
    ----------
    cells : table
        One row per (variant, N[, ε]): means and standard errors of the measured distances.
    fits : table
        The fitted power laws (slope, intercept, slope_se, ci_low, ci_high, …) per variant.
    runs : table
        Every run of the sweep.
    summary : dict
        The whole summary (as the CLI's ``chaos.json`` / ``bandwidth.json``).
    out : str
        The output directory (CSV, JSON and figures, as ``frflow chaos``/``frflow bandwidth``
        write them); rerunning into it reuses finished runs.
    computed, reused : int
        Runs computed by this call, and found finished in ``out``.

    Tables are pandas DataFrames when pandas is installed, else dicts of numpy columns.
    """

    def __init__(self, raw, out: str):
        summary_json, runs_json, self.computed, self.reused = raw
        self.summary: Dict[str, Any] = json.loads(summary_json)
        self.cells = _table(self.summary["cells"])
        self.fits = _table(self.summary["fits"])
        self.runs = _table(json.loads(runs_json))
        self.out = out

    def __repr__(self) -> str:
        return f"frflow.SweepResult(out={self.out!r}, computed={self.computed}, reused={self.reused})"


def _sweep(function, kind: str, spec, out, report) -> SweepResult:
    text, origin, base = _read_text(spec)
    out = tempfile.mkdtemp(prefix=f"frflow-{kind}-") if out is None else os.fspath(out)
    return SweepResult(function(text, origin, base, out, report=report), out)


def chaos(spec: Union[str, "os.PathLike[str]"], *, out: Union[str, "os.PathLike[str]", None] = None, report: bool = False) -> SweepResult:
    """Propagation of chaos: a sweep over N of the interacting system against its reference system.

    ``spec`` is a chaos sweep file (a path, or its TOML text) as for ``frflow chaos`` (see
    examples/chaos_t2.toml). Results, CSVs and figures go to ``out`` (default: a new temporary
    directory); ``report=True`` also writes report.html. Returns a :class:`SweepResult` whose
    ``cells`` hold the weight coupling and W₂ (mean, se) per (variant, N) and ``fits`` their
    slopes in log N.
    """
    return _sweep(_frflow.chaos, "chaos", spec, out, report)


def bandwidth(
    spec: Union[str, "os.PathLike[str]"], *, out: Union[str, "os.PathLike[str]", None] = None, report: bool = False
) -> SweepResult:
    """The ε → 0 limit: a sweep over (N, ε) of the stationary state against the unkernelized minimiser.

    ``spec`` is a bandwidth sweep file (a path, or its TOML text) as for ``frflow bandwidth``
    (see examples/bandwidth_t2.toml). Returns a :class:`SweepResult` whose ``cells`` hold W₂ and
    the moment errors per (variant, N, ε) and ``fits`` their slopes in log ε.
    """
    return _sweep(_frflow.bandwidth, "bandwidth", spec, out, report)


def adapters() -> list:
    """The GPU adapters wgpu sees (name, kind, backend, limits), as dicts."""
    return _frflow.adapters()
