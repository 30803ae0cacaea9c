"""Trials whose worker is gone: noticed by heartbeat on a database (any machine) or by process id on a
journal file (this machine), failed, and queued again so the retry resumes the original's checkpoint."""
from __future__ import annotations

from typing import Callable

import optuna
from optuna.trial import TrialState

from ..record import INTERRUPTED, RETRY_OF, WORKER, TrialRecord, WorkerId, origin_number
from ..trials import RetryStaleTrial, fail_trial, requeue

__all__ = ["RetryStaleTrial", "fail_trial", "recover_dead_trials", "requeue", "settle"]


def settle(study: optuna.Study, log: Callable[[str], None] = print) -> None:
    """Fail and re-queue trials whose worker is gone: by heartbeat on a database (any machine),
    by process id on a journal file (this machine)."""
    heartbeat = getattr(study._storage, "get_heartbeat_interval", lambda: None)()   # RDB storages, cached or not
    if heartbeat is not None:
        optuna.storages.fail_stale_trials(study)
    else:
        recover_dead_trials(study, log=log)


def recover_dead_trials(study: optuna.Study, pids: set[int] | None = None, reason: str = "worker process died",
                        log: Callable[[str], None] = print) -> list[int]:
    """Fail and re-queue RUNNING trials whose worker process (on this host) is gone.

    The journal storage has no heartbeat, so this is how its dead workers are noticed:
    ``pids`` names processes known dead; otherwise every local pid is checked. Trials
    stopped by an interrupt are also re-queued, once, so a resumed study finishes them.
    """
    recovered = []
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF) for t in trials if t.number}
    for t in trials:
        owner = WorkerId.parse(t.user_attrs.get(WORKER))
        if t.state == TrialState.RUNNING and owner is not None and owner.here:
            pid = owner.pid
            if (pids is not None and pid in pids) or (pids is None and owner.gone):
                fail_trial(study, t, f"{reason} (pid {pid})")   # the record says why, as any failure
                log(f"trial {t.number}: {reason} (pid {pid}); marked failed and queued again")
                requeue(study, t)
                recovered.append(t.number)
        elif (pids is None and t.state == TrialState.FAIL
              and TrialRecord.of(t).fail_kind == INTERRUPTED
              and origin_number(t) not in retried and t.number not in retried):
            requeue(study, t)
            retried.add(origin_number(t))
            log(f"trial {t.number}: was interrupted; queued again to resume from its checkpoint")
            recovered.append(t.number)
    return recovered
