"""Retries of trials whose worker died: the retry runs the same params and resumes the
original trial's checkpoint, whichever way the death was noticed (heartbeat on a database,
the supervisor or a later worker on a journal file)."""
from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial

RETRY_OF = "retry_of"   # user attribute: the first trial of a retry chain, whose run folder the retry resumes


def origin_number(trial: optuna.trial.BaseTrial) -> int:
    return int(trial.user_attrs.get(RETRY_OF, trial.number))


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue the same params again, pointing at the original trial's checkpoint."""
    study.enqueue_trial(trial.params, user_attrs={RETRY_OF: origin_number(trial)})


class RetryStaleTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's heartbeat retry (which copies params and user attributes), marking the copy as a
    retry of the original so it resumes that trial's checkpoint instead of starting over."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trial.user_attrs[RETRY_OF] = origin_number(trial)
        super().__call__(study, trial)
