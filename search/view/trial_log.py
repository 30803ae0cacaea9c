"""Progress for a log file (nohup, Slurm, Kubernetes, CI), where the live view cannot draw: one line per
finished trial, with the time of day, flushed at once."""
from __future__ import annotations

import sys
import time

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..record import TrialRecord
from .trials import fmt_params, state_of, trial_duration

DONE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def log_line(message: str) -> None:
    """``HH:MM:SS message`` on stdout, flushed (a log file must not wait for a buffer to fill)."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stdout, flush=True)


def trial_line(t: FrozenTrial) -> str:
    """``trial 3 complete: val EER 12.34%; lr=0.001 width=0.25; 41s``; a pruned or failed one gives its
    reason (and the rule that pruned it) in place of the EER."""
    r = TrialRecord.of(t)
    done = t.state == TrialState.COMPLETE
    outcome = f"val EER {t.value:.2f}%" if done else r.reason or "no reason recorded"
    seconds = trial_duration(t)
    return (f"trial {t.number} {state_of(t)}: {outcome}; {fmt_params(t.params)}"
            + (f"; {seconds:.0f}s" if seconds is not None else ""))


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
