"""One worker process: runs trials of one study until the shared budget is spent.

``run_worker`` is what ``facesearch worker`` runs on any machine that reaches the storage (and what
``facesearch study run`` starts N of locally). SIGTERM, SIGINT and the walltime warnings (SIGUSR1,
SIGUSR2) fail the running trial with the reason and queue it again, on any storage, so the next worker
resumes it from its checkpoint.
"""
from __future__ import annotations

import gc
import signal
import time
from typing import Callable, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from facenet.errors import UserError

from ..cost.budget import CostGuard
from ..interrupts import raise_when_safe
from ..logline import Line
from ..record import FAIL_KIND, FAIL_REASON, NOT_RUN, SLURM_JOB, WORKER, WorkerId
from ..spec import StudySpec, build_pruner, build_sampler
from ..spec.schema import DEFAULT_MAX_FAILURES
from ..storage import open_storage, runs_root
from ..trials import BudgetSpent, quiet_optuna
from .breaker import CircuitBreaker, StudyStopped, is_storage_error
from .objective import Objective, StudyCannotRun, TrialFailed
from .recovery import STOP_SIGNALS, interrupt, settle
from .slurm import slurm_job
from .study import FINISHED, finished, finished_or_running, over_budget, prepare_study, prune_checkpoints


class WorkerLines(Protocol):
    """How a worker words a finished trial and its closing summary: the caller gives it (the view's
    ``trial_log.WorkerLines``), so ``run`` does not import the view."""

    def trial(self, t: FrozenTrial) -> object: ...

    def summary(self, study: optuna.Study, n_trials: int | None) -> str: ...


POLL = 2.0   # seconds between looks at trials running elsewhere


class _Interrupted(BaseException):
    """A stop signal (``recovery.STOP_SIGNALS``) inside a worker; BaseException so the objective cannot swallow it."""


def run_worker(spec: StudySpec, url: str | None = None, worker_id: int = 0, n_trials: int | None = None,
               timeout: float | None = None, device: str = "auto", log: Callable[[str], None] = print,
               lines: WorkerLines | None = None) -> int:
    """One worker: run the spec's trials until the study's budget is spent; returns trials run here.
    ``lines`` (the view's) word a finished trial and the closing summary; without it the worker logs neither."""
    quiet_optuna()
    storage = open_storage(url)
    prepare_study(spec, storage)
    # a resumed study must not replay the seeds of its first run: offset by the trials already there
    offset = worker_id + 1000 * len(optuna.load_study(study_name=spec.name, storage=storage).trials)
    study = optuna.load_study(study_name=spec.name, storage=storage, sampler=build_sampler(spec, offset),
                              pruner=build_pruner(spec))
    timeout = timeout if timeout is not None else spec.timeout
    n_trials = n_trials if n_trials is not None else spec.n_trials
    runs = runs_root(url)
    job = slurm_job()
    host = str(WorkerId.me())
    log(Line(f"worker {worker_id} started: study {spec.name}, budget {n_trials or 'unbounded'} trial(s), on "
             f"{host}" + (f", Slurm job {job}" if job else ""),
             event="start", worker=worker_id, study=spec.name, n_trials=n_trials, host=host, slurm_job=job))
    why = "budget spent"
    try:
        with Objective(spec, runs, device, log) as objective:   # closing sends the tracking events still queued
            return optimize_until(study, objective, n_trials, time.time() + timeout if timeout else None, log,
                                  after_trial=lambda: prune_checkpoints(study, runs, spec.keep_checkpoints),
                                  breaker=CircuitBreaker(study, spec.max_failures), lines=lines,
                                  before_trial=CostGuard.for_worker(spec, study, storage, objective.config_for, log))
    except SystemExit as e:
        why = f"stopped by a signal (exit status {e.code})"
        raise
    except BaseException as e:
        why = f"stopped: {e}"
        raise
    finally:
        log_exit(study, worker_id, n_trials, why, log, lines)


def log_exit(study: optuna.Study, worker_id: int, n_trials: int | None, why: str, log: Callable[[str], None],
             lines: WorkerLines | None = None) -> None:
    """The exit line (why, trials run here) and a closing summary of the whole study."""
    try:
        trials = study.get_trials(deepcopy=False)
    except Exception as e:   # the storage went away: say so rather than hide the exit line behind a traceback
        log(Line(f"worker {worker_id} exiting: {why}; storage unreachable ({type(e).__name__})", event="exit",
                 worker=worker_id, reason=why))
        return
    ran = sum(t.user_attrs.get(WORKER) == str(WorkerId.me()) and t.state in FINISHED for t in trials)
    log(Line(f"worker {worker_id} exiting: {why}; ran {ran} trial(s)", event="exit", worker=worker_id,
             reason=why, ran=ran))
    if lines is not None:
        log(Line(f"summary: {lines.summary(study, n_trials)}", event="summary", study=study.study_name))


def optimize_until(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int | None,
                   deadline: float | None = None, log: Callable[[str], None] = print,
                   after_trial: Callable[[], object] = lambda: None,
                   breaker: CircuitBreaker | None = None,
                   before_trial: Callable[[optuna.Trial], None] = lambda trial: None,
                   lines: WorkerLines | None = None) -> int:
    """Run trials until the study holds ``n_trials`` finished or running ones or ``deadline`` passes.

    Each trial records the process running it, so a supervisor (or a later worker on this
    host) can tell a dead worker's trial from a live one. ``before_trial`` sees each new
    trial first (the cost estimate and GPU-hour budget) and may raise ``BudgetSpent`` to stop.
    A stop signal fails the running trial with the reason, queues it again (its retry resumes the
    checkpoint) and exits with status 130. ``breaker`` stops the worker (``StudyStopped``) on a failure that is not the
    configuration's own or too many failures.
    """
    me = str(WorkerId.me())
    job = slurm_job()
    breaker = breaker or CircuitBreaker(study, DEFAULT_MAX_FAILURES)
    current: list[int] = []
    gc.freeze()   # torch's and optuna's import-time objects: gc_after_trial would rescan them every trial

    def owned(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER, me)
        if job:
            trial.set_user_attr(SLURM_JOB, job)
        current[:] = [trial.number]
        if n_trials is not None and over_budget(study, trial.number, n_trials):
            trial.set_user_attr(FAIL_REASON, f"{NOT_RUN} when this trial started (not run)")
            trial.set_user_attr(FAIL_KIND, NOT_RUN)
            raise BudgetSpent()
        try:
            before_trial(trial)
            return objective(trial)
        except Exception as e:
            if stopping:   # an error raised while the signal unwound the trial (a probe's cleanup, say): the
                raise _Interrupted(stopping[0]) from e   # signal is the reason, and the trial resumes later
            if isinstance(e, (UserError, OSError)) and FAIL_REASON not in trial.user_attrs:
                trial.set_user_attr(FAIL_REASON, str(e))   # met before the objective (the cost probe's data)
            raise

    stopping: list[str] = []

    def stop(signum, _frame):
        stopping.append(signal.Signals(signum).name)
        for s in previous:   # one stop: a second signal must not cut the marking of the trial short
            signal.signal(s, signal.SIG_IGN)
        raise_when_safe(_Interrupted(signal.Signals(signum).name))   # or once a storage write ends

    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    ran = 0
    try:
        while deadline is None or time.time() < deadline:
            settle(study, log)
            if n_trials is not None and finished(study) >= n_trials:
                break
            # the last trials run elsewhere (wait in case their worker dies), or their failing could pass
            # budget.max_failures
            if n_trials is not None and finished_or_running(study) >= n_trials or not breaker.may_start():
                time.sleep(POLL)
                continue
            try:
                study.optimize(owned, n_trials=1, catch=(TrialFailed,), gc_after_trial=True)
            except BudgetSpent:
                break
            ran += 1
            if lines is not None:
                log(lines.trial(study.get_trials(deepcopy=False)[current[0]]))
            breaker.after(current[0])
            after_trial()
    except StudyCannotRun as e:
        raise breaker.stopped_by(e) from None
    except StudyStopped:
        raise
    except Exception as e:
        if is_storage_error(e):
            raise breaker.stopped_by(e) from None
        raise
    except _Interrupted as e:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get(WORKER) == me:
                interrupt(study, t, str(e), log)
        raise SystemExit(130)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return ran
