"""itnas/run.py: the step clock behind each epoch's warm-up and steady step time."""

from __future__ import annotations

import itertools

import pytest

from itnas import run as run_mod


def _clock(monkeypatch, ends):
    """A StepClock whose steps end at the given times (seconds from its start at 0)."""
    times = itertools.chain([0.0], ends)
    monkeypatch.setattr(run_mod.time, "monotonic", lambda: next(times))
    clock = run_mod.StepClock()
    for _ in ends:
        clock.tick()
    return clock.record()


def test_the_first_three_steps_are_the_warm_up_and_the_median_of_the_rest_the_step(monkeypatch):
    # steps of 5, 1, 1 s (warm-up), then 2, 9, 3 s: median 3
    assert _clock(monkeypatch, [5, 6, 7, 9, 18, 21]) == {"warmup_s": 7, "warmup_steps": 3, "step_s": 3}


def test_an_epoch_of_warm_up_only_has_no_steady_step(monkeypatch):
    assert _clock(monkeypatch, [4, 6]) == {"warmup_s": 6, "warmup_steps": 2}
    assert set(run_mod.TIMING_KEYS) >= {"epoch_s", "warmup_s", "warmup_steps", "step_s"}


@pytest.mark.parametrize("steps", [1, 3, 4])
def test_warm_up_and_steady_steps_account_for_every_step(monkeypatch, steps):
    out = _clock(monkeypatch, [float(t) for t in range(1, steps + 1)])
    assert out["warmup_steps"] == min(steps, run_mod.WARMUP_STEPS)
    assert ("step_s" in out) is (steps > run_mod.WARMUP_STEPS)
