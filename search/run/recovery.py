"""Trials whose worker is gone: noticed by heartbeat on a database (any machine) or by process id on a
journal file (this machine), failed, and queued again so the retry resumes the original's checkpoint."""
from __future__ import annotations

import os
import signal
import socket
from typing import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..record import FAIL_REASON, INTERRUPTED, RETRY_OF, WORKER, TrialRecord, origin_number


MAX_RETRY = 3   # retries of a trial whose worker died (a crash each time is the trial's own fault)
# the walltime warnings: Slurm's --signal=USR1@T by convention, USR2 for submitit's default
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


def requeue(study: optuna.Study, trial: FrozenTrial, log: Callable[[str], None] = print) -> bool:
    """Queue the same params again, pointing at the original trial's checkpoint; False (and a line saying
    why) when the trial's worker died ``MAX_RETRY`` times already. Interruptions do not count: each one
    resumes where the last stopped."""
    origin = origin_number(trial)
    died = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if origin_number(t) == origin and TrialRecord.of(t).failure]   # interruptions are no failure
    if len(died) > MAX_RETRY:
        log(f"trial {trial.number}: not queued again: trial {origin}'s worker died {len(died)} times")
        return False
    queue_retry(study, trial)
    return True


def queue_retry(study: optuna.Study, trial: FrozenTrial) -> None:
    """The same params again, as a retry of the chain's first trial (whose run folder it resumes)."""
    study.enqueue_trial(trial.params, user_attrs={RETRY_OF: origin_number(trial)})


def interrupt(study: optuna.Study, trial: FrozenTrial, why: str, log: Callable[[str], None] = print) -> None:
    """A trial stopped by a signal, on any storage: queue its retry first, then fail it, so whoever sees it
    failed also sees its retry (and never queues a second one)."""
    queue_retry(study, trial)
    fail_with_reason(study, trial, f"{INTERRUPTED} by {why}")
    log(f"trial {trial.number}: interrupted by {why}; queued again to resume from its checkpoint")


class RetryStaleTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's heartbeat retry (which copies params and user attributes), marking the copy as a
    retry of the original so it resumes that trial's checkpoint instead of starting over."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trial.user_attrs[RETRY_OF] = origin_number(trial)
        super().__call__(study, trial)


def fail_with_reason(study: optuna.Study, t: FrozenTrial, reason: str) -> None:
    study._storage.set_trial_user_attr(t._trial_id, FAIL_REASON, reason)   # no public setter outside the objective
    study.tell(t.number, state=TrialState.FAIL)


def settle(study: optuna.Study, log: Callable[[str], None] = print) -> None:
    """Fail and re-queue trials whose worker is gone: by heartbeat on a database (any machine),
    by process id on a journal file (this machine)."""
    heartbeat = getattr(study._storage, "get_heartbeat_interval", lambda: None)()   # RDB storages, cached or not
    if heartbeat is not None:
        optuna.storages.fail_stale_trials(study)
    else:
        recover_dead_trials(study, log=log)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dead_trials(study: optuna.Study, pids: set[int] | None = None, reason: str = "worker process died",
                        log: Callable[[str], None] = print) -> list[int]:
    """Fail and re-queue RUNNING trials whose worker process (on this host) is gone.

    The journal storage has no heartbeat, so this is how its dead workers are noticed:
    ``pids`` names processes known dead; otherwise every local pid is checked. Trials
    stopped by an interrupt are also re-queued, once, so a resumed study finishes them.
    """
    host = socket.gethostname()
    recovered = []
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF) for t in trials if t.number}
    for t in trials:
        owner = t.user_attrs.get(WORKER, "")
        owner_host, _, pid = owner.rpartition(":")
        if t.state == TrialState.RUNNING and owner_host == host and pid.isdigit():
            if (pids is not None and int(pid) in pids) or (pids is None and not process_alive(int(pid))):
                fail_with_reason(study, t, f"{reason} (pid {pid})")   # the record says why, as any failure
                if requeue(study, t, log):
                    log(f"trial {t.number}: {reason} (pid {pid}); marked failed and queued again")
                recovered.append(t.number)
        elif (pids is None and t.state == TrialState.FAIL
              and str(t.user_attrs.get(FAIL_REASON, "")).startswith(INTERRUPTED)
              and origin_number(t) not in retried and t.number not in retried):
            requeue(study, t, log)
            retried.add(origin_number(t))
            log(f"trial {t.number}: was interrupted; queued again to resume from its checkpoint")
            recovered.append(t.number)
    return recovered
