"""Progress for a log file (nohup, Slurm, Kubernetes, CI), where the live view cannot draw: one line per
finished trial, dated and flushed at once (``search.logline``)."""
from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..logline import Line, log_line
from ..record import TrialRecord
from .status import fmt_params, state_of, trial_duration

DONE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
__all__ = ["DONE", "TrialLog", "log_line", "trial_line"]


def trial_line(t: FrozenTrial) -> Line:
    """``trial 3 complete: val EER 12.34%; lr=0.001 width=0.25; 41s``; a pruned or failed one gives its
    reason (and the rule that pruned it) in place of the EER."""
    r = TrialRecord.of(t)
    done = t.state == TrialState.COMPLETE
    outcome = f"val EER {t.value:.2f}%" if done else r.reason or "no reason recorded"
    seconds = trial_duration(t)
    return Line(f"trial {t.number} {state_of(t)}: {outcome}; {fmt_params(t.params)}"
                + (f"; {seconds:.0f}s" if seconds is not None else ""),
                event="trial", trial=t.number, state=state_of(t), value=t.value if done else None,
                reason=None if done else r.reason, params=t.params, seconds=seconds)


class TrialLog:
    """Writes a line for each trial that finished since the last ``tick`` (trials finished before it started
    are not repeated)."""

    def __init__(self, study: optuna.Study, write=log_line):
        self.study, self.write = study, write
        self.seen = {t.number for t in study.get_trials(deepcopy=False, states=DONE)}

    def tick(self) -> None:
        for t in self.study.get_trials(deepcopy=False, states=DONE):
            if t.number not in self.seen:
                self.seen.add(t.number)
                self.write(trial_line(t))
