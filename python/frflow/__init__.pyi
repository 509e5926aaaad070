"""Type stubs of the frflow package (see __init__.py for the docstrings)."""

import os
from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

ArrayLike = npt.ArrayLike
PathLike = Union[str, "os.PathLike[str]"]
Potential = Callable[[np.ndarray], np.ndarray]
Table = Any  # pandas.DataFrame when pandas is installed, else Dict[str, np.ndarray]

class FrflowError(ValueError): ...

class InvalidValueError(FrflowError):
    field: str
    value: str
    allowed: str

class ConfigError(FrflowError):
    path: str

class DataError(FrflowError):
    path: str

class NumericalError(FrflowError):
    step: int

class GpuError(FrflowError): ...
class FileError(FrflowError): ...

class Interrupted(KeyboardInterrupt):
    result: Result
    def __init__(self, result: Result) -> None: ...

class Problem:
    def __init__(
        self,
        *,
        domain: Union[Literal["euclidean", "torus"], Mapping[str, Any]],
        sigma: float,
        epsilon: float,
        variant: Literal["A", "B", "C", "D", "D'", "exact"] = "B",
        reference: Union[None, Literal["uniform"], Mapping[str, Any]] = None,
        divergence: Literal["kl", "chi2"] = "kl",
        energies: Sequence[Union[Mapping[str, Any], Potential]] = (),
        particles: Union[int, ArrayLike, Mapping[str, Any]] = 1024,
        init: Optional[Mapping[str, Any]] = None,
        seed: int = 0,
        dim: Optional[int] = None,
        side: Optional[float] = None,
        engine: Literal["auto", "cpu", "gpu"] = "auto",
        device: Optional[str] = None,
        quadrature: Optional[Mapping[str, Any]] = None,
        cutoff: Any = None,
    ) -> None: ...
    @classmethod
    def from_toml(
        cls,
        text_or_path: PathLike,
        *,
        positions: Optional[ArrayLike] = None,
        engine: Optional[Literal["auto", "cpu", "gpu"]] = None,
        device: Optional[str] = None,
    ) -> Problem: ...
    @property
    def positions(self) -> np.ndarray: ...
    @property
    def n(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def info(self) -> Dict[str, Any]: ...

class Result:
    weights: np.ndarray
    log_weights: np.ndarray
    positions: np.ndarray
    trace: Table
    termination: Literal["max_steps", "final_time", "stationary", "stopped", "interrupted"]
    stop_reason: Optional[str]
    step: int
    time: float
    diagnostics: Dict[str, Any]
    engine: str
    wall_seconds: float
    steps_this_run: int
    @property
    def mean(self) -> np.ndarray: ...
    @property
    def variance(self) -> np.ndarray: ...

def run(
    problem: Problem,
    *,
    steps: Optional[int] = None,
    final_time: Optional[float] = None,
    tolerance: Optional[float] = None,
    h: Union[float, Literal["auto"], None] = None,
    scheme: Optional[Literal["euler", "exponential"]] = None,
    every: Optional[int] = None,
    callback: Optional[Callable[[Dict[str, Any]], Optional[bool]]] = None,
    engine: Optional[Literal["auto", "cpu", "gpu"]] = None,
    device: Optional[str] = None,
    resume: Optional[Result] = None,
) -> Result: ...
def w2(
    x: ArrayLike,
    wx: Optional[ArrayLike] = None,
    y: Optional[ArrayLike] = None,
    wy: Optional[ArrayLike] = None,
    method: Literal["exact", "sinkhorn", "1d"] = "exact",
    *,
    side: Optional[float] = None,
    epsilon: Optional[float] = None,
    squared: bool = False,
) -> float: ...

class SweepResult:
    cells: Table
    fits: Table
    runs: Table
    summary: Dict[str, Any]
    out: str
    computed: int
    reused: int

def chaos(spec: PathLike, *, out: Optional[PathLike] = None, report: bool = False) -> SweepResult: ...
def bandwidth(spec: PathLike, *, out: Optional[PathLike] = None, report: bool = False) -> SweepResult: ...
def adapters() -> List[Dict[str, Any]]: ...
