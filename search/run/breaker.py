"""The worker's circuit breaker: a study whose trials fail for a reason that is not their configuration's
own (data gone, disk full, the storage down) or that fails the same way again and again stops, instead of
filling the storage with FAIL trials.

A configuration's own failure (a CUDA out-of-memory error, a point that cannot run) fails only its trial;
``budget.max_failures`` bounds how many such trials a study holds. The worker raises ``StudyStopped``
(a ``UserError``: one line, exit status 2), and ``facesearch study run`` stops its other workers.
"""
from __future__ import annotations

import optuna
from optuna.trial import TrialState

from facenet.errors import UserError

from ..record import TrialRecord

REPEATS = 3          # the same fail reason this many times in a row (in one worker) stops it
DATABASE_MODULES = ("sqlalchemy", "psycopg", "psycopg2", "pymysql", "grpc")   # whose errors are the storage's


class StudyStopped(UserError):
    """The study cannot go on; the message says why and what to fix."""


def is_storage_error(e: BaseException) -> bool:
    """An error of the storage itself (a database gone, a journal that cannot be written)."""
    module = type(e).__module__.split(".", 1)[0]
    return isinstance(e, (optuna.exceptions.StorageInternalError, OSError)) or module in DATABASE_MODULES


def failures(study: optuna.Study) -> list[TrialRecord]:
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return [r for r in map(TrialRecord.of, failed) if r.failure]


class CircuitBreaker:
    def __init__(self, study: optuna.Study, max_failures: int, repeats: int = REPEATS):
        self.study, self.max_failures, self.repeats = study, max_failures, repeats
        self.recent: list[str] = []      # this worker's fail reasons since its last trial that did not fail

    def may_start(self) -> bool:
        """Raise when the study already holds ``max_failures``; False (wait) while the trials running could
        bring it there, so the count is never passed."""
        failed = failures(self.study)
        if len(failed) >= self.max_failures:
            raise StudyStopped(f"study {self.study.study_name!r}: {len(failed)} failed trials reached "
                               f"budget.max_failures {self.max_failures} (last: {failed[-1].reason}); "
                               f"fix the cause, or raise budget.max_failures")
        running = len(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        return len(failed) + running < self.max_failures

    def after(self, number: int) -> None:
        """Look at the trial this worker just finished: the same reason ``repeats`` times in a row stops."""
        r = TrialRecord.of(self.study.get_trials(deepcopy=False)[number])
        self.recent = self.recent + [r.reason] if r.failure else []
        if len(self.recent) >= self.repeats and len(set(self.recent[-self.repeats:])) == 1:
            raise StudyStopped(f"study {self.study.study_name!r}: {self.repeats} trials in a row failed "
                               f"with: {r.reason}")
        self.may_start()

    def stopped_by(self, e: BaseException) -> StudyStopped:
        """The one-line stop for an error that is not the configuration's own."""
        if isinstance(e, UserError):
            return StudyStopped(f"study {self.study.study_name!r} stopped: {e}")
        first = (str(getattr(e, "orig", None) or e).strip().splitlines() or [""])[0]
        return StudyStopped(f"study {self.study.study_name!r} stopped: {type(e).__name__}: {first}; "
                            f"check the storage and the disk")
