"""Ctrl-C during a run: a KeyboardInterrupt (frflow.Interrupted) with the state intact."""

import _thread
import threading

import numpy as np
import pytest

import frflow
from conftest import t2


def test_keyboard_interrupt_stops_cleanly_and_resumes():
    p = t2("B", n=1024)
    steps = 1_000_000  # minutes of work: the interrupt must stop it
    timer = threading.Timer(0.5, _thread.interrupt_main)  # as Ctrl-C: SIGINT's flag in the main thread
    timer.start()
    with pytest.raises(KeyboardInterrupt) as e:
        frflow.run(p, steps=steps, h=0.001, every=10, engine="cpu")
    timer.join()
    assert isinstance(e.value, frflow.Interrupted)
    r = e.value.result
    assert r.termination == "interrupted"
    assert 0 < r.step < steps and r.step % 10 == 0
    assert abs(r.weights.sum() - 1.0) < 1e-12 and np.all(r.weights > 0)
    # The state is intact: resuming it to step + 20 equals one uninterrupted run of step + 20 steps.
    target = r.step + 20
    resumed = frflow.run(p, steps=target, h=0.001, engine="cpu", resume=r)
    whole = frflow.run(p, steps=target, h=0.001, every=10, engine="cpu")
    np.testing.assert_array_equal(resumed.weights, whole.weights)


def test_interrupt_on_the_gpu(gpu_device):
    timer = threading.Timer(1.0, _thread.interrupt_main)
    timer.start()
    with pytest.raises(frflow.Interrupted) as e:
        frflow.run(t2("B", n=256), steps=10_000_000, h=1e-4, every=10, engine="gpu", device=gpu_device)
    timer.join()
    assert e.value.result.termination == "interrupted" and e.value.result.step > 0


def test_the_gil_is_released_during_a_run():
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(1)
            stop.wait(0.005)

    thread = threading.Thread(target=count)
    thread.start()
    frflow.run(t2("B", n=1024), steps=200, h=0.001, every=50, engine="cpu")
    stop.set()
    thread.join()
    assert len(ticks) > 10
