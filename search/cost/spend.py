"""Compute spent and committed by a study's trials (light: the status view reads it without torch)."""
from __future__ import annotations

import datetime as dt

from optuna.trial import FrozenTrial, TrialState

from ..record import TrialRecord

ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


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


def budget_summary(trials: list[FrozenTrial], hours: float, n_trials: int | None) -> dict[str, float | int]:
    """Spent (ended trials, and running ones so far), left, and an ETA: the trials still to run at their
    mean estimate (at most what is left), shared by the workers running now."""
    now = dt.datetime.now()
    running = [t for t in trials if t.state == TrialState.RUNNING]
    so_far = sum((now - t.datetime_start).total_seconds() for t in running if t.datetime_start)
    spent = spent_seconds(trials) + so_far
    left = max(hours * 3600 - spent, 0.0)
    workers = len({TrialRecord.of(t).worker for t in running}) or 1
    estimates = [e.seconds for t in trials if (e := TrialRecord.of(t).estimate) is not None]
    work = left
    if n_trials is not None and estimates:
        ended = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        todo = max(n_trials - ended - len(running), 0)
        remaining = sum(max((running_cost(t, now) or 0.0) - (now - t.datetime_start).total_seconds(), 0.0)
                        for t in running if t.datetime_start)
        work = min(left, remaining + todo * sum(estimates) / len(estimates))
    return {"spent": spent, "left": left, "eta": work / workers, "workers": workers}
