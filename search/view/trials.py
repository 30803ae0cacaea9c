"""One trial as the views show it: its state (with the rule that pruned it), epochs, time and params, and
trials counted by state."""
from __future__ import annotations

import datetime as dt

from optuna.trial import FrozenTrial, TrialState

from ..record import TrialRecord


def trial_duration(t: FrozenTrial) -> float | None:
    if t.datetime_start is None:
        return None
    end = t.datetime_complete or dt.datetime.now()
    return (end - t.datetime_start).total_seconds()


def epoch_of(t: FrozenTrial) -> int:
    return max(t.intermediate_values, default=0)


def state_of(t: FrozenTrial) -> str:
    """The state, with the rule that pruned a pruned trial: ``pruned (median)``, ``pruned (cap)``..."""
    if t.state == TrialState.PRUNED:
        return f"pruned ({TrialRecord.of(t).pruned_by or 'pruner'})"
    return "failed" if t.state == TrialState.FAIL else t.state.name.lower()


def counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials by state, pruned ones by rule."""
    c = {"complete": 0}
    for t in trials:
        state = state_of(t)
        c[state] = c.get(state, 0) + 1
    return c


def pruned(c: dict[str, int]) -> int:
    return sum(n for state, n in c.items() if state.startswith("pruned"))


def fmt_params(params: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
