"""What every layer does to a trial outside its own objective: fail it with a reason (and, when it is not
the configuration's fault, the kind), queue it again as a retry of the original, and the exception that
stops a worker when the budget is spent. Below ``storage``, ``run`` and ``cost``: it imports only ``record``."""
from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from .record import FAIL_KIND, FAIL_REASON, RETRY_OF, origin_number


MAX_RETRY = 3   # retries of a trial whose worker died (a crash each time is the trial's own fault)


def quiet_optuna() -> None:
    """Optuna's INFO lines (a line per trial, per in-memory study) off: what ``main()`` and a worker do when they
    start, never an import (a notebook that imports facesearch keeps its own logging)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)


class BudgetSpent(Exception):
    """No more trials for this worker: another took the last of ``n_trials``, or the next one's estimate does
    not fit what is left of ``budget.hours``."""


def fail_trial(study: optuna.Study, t: FrozenTrial, reason: str, kind: str | None = None) -> None:
    """Mark a trial (not the caller's live one) FAIL with its reason, and its kind (``record.NOT_FAILURES``)
    when the failure is not the configuration's own."""
    storage = study._storage   # no public setter outside the objective
    storage.set_trial_user_attr(t._trial_id, FAIL_REASON, reason)
    if kind is not None:
        storage.set_trial_user_attr(t._trial_id, FAIL_KIND, kind)
    study.tell(t.number, state=TrialState.FAIL)


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue the same params again, pointing at the original trial's checkpoint."""
    study.enqueue_trial(trial.params, user_attrs={RETRY_OF: origin_number(trial)})


class RetryStaleTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's heartbeat retry (which copies params and user attributes), marking the copy as a
    retry of the original so it resumes that trial's checkpoint instead of starting over."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trial.user_attrs[RETRY_OF] = origin_number(trial)
        super().__call__(study, trial)
