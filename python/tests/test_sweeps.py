"""frflow.chaos and frflow.bandwidth return their summary tables."""

import numpy as np

import frflow

PROBLEM = """
[problem]
seed = 1
engine = "cpu"
sigma = 1.0
[problem.domain]
kind = "euclidean"
dim = 1
[problem.reference]
kind = "gaussian"
mean = 0.0
std = 1.0
[problem.kernel]
epsilon = 0.5
variant = "B"
[problem.particles]
n = 64
init = { kind = "gaussian", mean = 0.8, std = 1.5 }
[problem.time]
scheme = "euler"
h = 0.05
final_time = 0.5
"""


def column(table, name):
    return np.asarray(table[name])


def test_chaos_summary_tables(tmp_path):
    spec = PROBLEM + '[sweep]\nn = [32, 64, 128]\nreplicates = 3\nvariants = ["A", "B"]\nseed = 10\n'
    out = tmp_path / "chaos"
    s = frflow.chaos(spec, out=out)
    assert s.computed == 18 and s.reused == 0
    assert list(column(s.cells, "n")) == [32, 64, 128, 32, 64, 128]
    assert set(column(s.cells, "variant")) == {"A", "B"}
    for name in ["coupling_mean", "coupling_se", "w2_mean", "w2_se"]:
        assert np.all(np.isfinite(column(s.cells, name))) and np.all(column(s.cells, name) >= 0)
    assert len(column(s.fits, "variant")) == 2 and np.all(np.isfinite(column(s.fits, "coupling_slope")))
    assert len(column(s.runs, "coupling")) == 18
    assert (out / "chaos_summary.csv").exists()
    # Rerunning into the same directory reuses the finished runs.
    again = frflow.chaos(spec, out=out)
    assert again.computed == 0 and again.reused == 18


def test_bandwidth_summary_tables():
    spec = PROBLEM + '[sweep]\nepsilon = [0.2, 0.4]\nn = [64]\nreplicates = 2\nvariants = ["A"]\nseed = 20\n'
    s = frflow.bandwidth(spec)
    assert list(column(s.cells, "epsilon")) == [0.2, 0.4]
    assert np.all(np.isfinite(column(s.cells, "w2_mean")))
    assert s.summary["dim"] == 1
