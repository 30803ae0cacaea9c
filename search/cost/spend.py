"""Compute spent and committed by a study's trials (light: the status view reads it without torch)."""
from __future__ import annotations

import datetime as dt

from optuna.trial import FrozenTrial, TrialState

from ..record import TrialRecord

ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)   # count toward n_trials


def running_cost(t: FrozenTrial, now: dt.datetime | None = None) -> float | None:
    """A running trial counts max(estimate, time so far), plus its probe; None before it has an estimate."""
    r = TrialRecord.of(t)
    if r.estimate is None:
        return None
    elapsed = ((now or dt.datetime.now()) - t.datetime_start).total_seconds() if t.datetime_start else 0.0
    return max(r.estimate.seconds, elapsed) + r.probe_seconds


def spent_seconds(trials: list[FrozenTrial]) -> float:
    """Compute used by the trials that ended (training, and the probes they ran)."""
    return sum(TrialRecord.of(t).spent for t in trials if t.state in ENDED)


def _elapsed(t: FrozenTrial, now: dt.datetime) -> float:
    """Seconds a trial ran (so far, while it runs)."""
    return ((t.datetime_complete or now) - t.datetime_start).total_seconds() if t.datetime_start else 0.0


def time_left(trials: list[FrozenTrial], n_trials: int | None, workers: int,
              now: dt.datetime | None = None) -> float | None:
    """Seconds of work until the study holds ``n_trials`` finished trials, shared by ``workers``: what the running
    trials still need plus the trials not started, each at the mean of the trials' cost estimates (without
    estimates: the mean time of the finished trials that trained); None when neither is known yet."""
    if not n_trials:
        return None
    now = now or dt.datetime.now()
    running = [t for t in trials if t.state == TrialState.RUNNING]
    todo = max(n_trials - sum(t.state in FINISHED for t in trials) - len(running), 0)
    if not running and not todo:
        return 0.0
    estimates = [e.seconds for t in trials if (e := TrialRecord.of(t).estimate) is not None]
    if not estimates:
        estimates = [_elapsed(t, now) for t in trials if t.state in FINISHED and TrialRecord.of(t).trained
                     and t.datetime_start]
    if not estimates:
        return None
    each = sum(estimates) / len(estimates)
    remaining = sum(max((running_cost(t, now) or each) - _elapsed(t, now), 0.0) for t in running)
    return (remaining + todo * each) / max(workers, 1)


def budget_summary(trials: list[FrozenTrial], hours: float, n_trials: int | None) -> dict[str, float | int]:
    """Spent (ended trials, and running ones so far), left, and an ETA: ``time_left`` (at most what is left of
    the budget) at the workers running now."""
    now = dt.datetime.now()
    running = [t for t in trials if t.state == TrialState.RUNNING]
    spent = spent_seconds(trials) + sum(_elapsed(t, now) for t in running)
    left = max(hours * 3600 - spent, 0.0)
    workers = len({TrialRecord.of(t).worker for t in running}) or 1
    work = time_left(trials, n_trials, 1, now)
    return {"spent": spent, "left": left, "eta": min(left, left if work is None else work) / workers,
            "workers": workers}
