"""Worker processes: each runs trials of one study until the shared budget is spent.

``run_worker`` is one process's loop (also what ``facesearch worker`` runs on other
machines). ``Supervisor`` is ``facesearch study run``: it starts N workers (one per GPU
when GPUs are given, each with its own sampler seed), shows live progress, replaces a
worker that dies and re-queues its trial, and stops everything cleanly on Ctrl-C.
"""
from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from .objective import Objective, TrialFailed, trial_dir
from .retry import RETRY_OF, origin_number, requeue
from .spec import StudySpec, build_pruner, build_sampler
from .storage import StorageError, is_database, open_storage, storage_url

SIGNATURE = "facesearch:signature"
SPEC = "facesearch:spec"
WORKER = "worker"            # trial user attribute: host:pid of the process running it
INTERRUPTED = "interrupted"  # fail_reason prefix of trials stopped by Ctrl-C / SIGTERM: retried on resume

optuna.logging.set_verbosity(optuna.logging.WARNING)


def runs_root(url: str | None = None) -> Path:
    """Trial run folders: $FACESEARCH_RUNS, else beside the journal file, else runs/."""
    if os.environ.get("FACESEARCH_RUNS"):
        return Path(os.environ["FACESEARCH_RUNS"])
    url = storage_url(url)
    return Path("runs") if is_database(url) else Path(url.removeprefix("journal:")).parent


def prepare_study(spec: StudySpec, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create the study (queueing the spec's known-good points) or load it; refuse a different space."""
    signature = spec.space_signature()
    # look before creating: a journal records a failed create too, and an existing study must stay untouched
    if spec.name in optuna.get_all_study_names(storage):
        return _existing(spec, storage, signature)
    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, direction="minimize")
    except optuna.exceptions.DuplicatedStudyError:   # another worker created it a moment ago
        return _existing(spec, storage, signature)
    study.set_user_attr(SIGNATURE, signature)
    study.set_user_attr(SPEC, spec.to_json())
    study.set_user_attr("description", spec.description or "")
    for point in spec.enqueue:
        study.enqueue_trial(point, skip_if_exists=True)
    return study


def _existing(spec: StudySpec, storage: optuna.storages.BaseStorage, signature: str) -> optuna.Study:
    study = optuna.load_study(study_name=spec.name, storage=storage)
    stored = study.user_attrs.get(SIGNATURE)
    if stored is not None and stored != signature:
        raise StorageError(f"study {spec.name!r} already exists in this storage with a different search space; "
                           f"give the spec another name: or use another --storage")
    return study


POLL = 2.0   # seconds between looks at trials running elsewhere


def settle(study: optuna.Study, log: Callable[[str], None] = print) -> None:
    """Fail and re-queue trials whose worker is gone: by heartbeat on a database (any machine),
    by process id on a journal file (this machine)."""
    heartbeat = getattr(study._storage, "get_heartbeat_interval", lambda: None)()   # RDB storages, cached or not
    if heartbeat is not None:
        optuna.storages.fail_stale_trials(study)
    else:
        recover_dead_trials(study, log=log)


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def finished_or_running(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)))


class BudgetSpent(Exception):
    """Another worker took the last trial of the budget between our check and our ask."""


def over_budget(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Trial numbers are handed out atomically, so ranking by number settles races between workers:
    a trial runs only if fewer than ``n_trials`` finished or running trials came before it."""
    before = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                    TrialState.RUNNING)) if t.number < number]
    return len(before) >= n_trials


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
                study.tell(t.number, state=TrialState.FAIL)
                log(f"trial {t.number}: {reason} (pid {pid}); marked failed and queued again")
                requeue(study, t)
                recovered.append(t.number)
        elif (pids is None and t.state == TrialState.FAIL and str(t.user_attrs.get("fail_reason", "")).startswith(INTERRUPTED)
              and origin_number(t) not in retried and t.number not in retried):
            requeue(study, t)
            retried.add(origin_number(t))
            log(f"trial {t.number}: was interrupted; queued again to resume from its checkpoint")
            recovered.append(t.number)
    return recovered


class _Interrupted(BaseException):
    """SIGTERM / SIGINT inside a worker; BaseException so the objective cannot swallow it."""


def prune_checkpoints(study: optuna.Study, runs: Path, keep: int) -> list[int]:
    """Bounded disk: delete the checkpoints of finished trials outside the study's best ``keep``.

    Failed trials keep theirs (a retry resumes from it), running ones are still writing.
    Returns the trial numbers whose checkpoints were removed.
    """
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    ranked = sorted((t for t in finished if t.state == TrialState.COMPLETE and t.value is not None),
                    key=lambda t: t.value)
    keep_runs = {origin_number(t) for t in ranked[:keep]}
    removed = []
    for t in finished:
        number = origin_number(t)
        if number in keep_runs:
            continue
        files = list(trial_dir(runs, study.study_name, number).glob("*.pt"))
        for f in files:
            f.unlink(missing_ok=True)
        if files:
            removed.append(t.number)
    return removed


def run_worker(spec: StudySpec, url: str | None = None, worker_id: int = 0, n_trials: int | None = None,
               timeout: float | None = None, device: str = "auto", log: Callable[[str], None] = print) -> int:
    """One worker: run the spec's trials until the study's budget is spent; returns trials run here."""
    storage = open_storage(url)
    prepare_study(spec, storage)
    # a resumed study must not replay the seeds of its first run: offset by the trials already there
    offset = worker_id + 1000 * len(optuna.load_study(study_name=spec.name, storage=storage).trials)
    study = optuna.load_study(study_name=spec.name, storage=storage, sampler=build_sampler(spec, offset),
                              pruner=build_pruner(spec))
    timeout = timeout if timeout is not None else spec.timeout
    runs = runs_root(url)
    return optimize_until(study, Objective(spec, runs, device, log),
                          n_trials if n_trials is not None else spec.n_trials,
                          time.time() + timeout if timeout else None, log,
                          after_trial=lambda: prune_checkpoints(study, runs, spec.keep_checkpoints))


def optimize_until(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int | None,
                   deadline: float | None = None, log: Callable[[str], None] = print,
                   after_trial: Callable[[], object] = lambda: None) -> int:
    """Run trials until the study holds ``n_trials`` finished or running ones or ``deadline`` passes.

    Each trial records the process running it, so a supervisor (or a later worker on this
    host) can tell a dead worker's trial from a live one. SIGTERM / SIGINT fail the running
    trial with the reason (it resumes on the next run) and exit with status 130.
    """
    me = f"{socket.gethostname()}:{os.getpid()}"
    gc.freeze()   # torch's and optuna's import-time objects: gc_after_trial would rescan them every trial

    def owned(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER, me)
        if n_trials is not None and over_budget(study, trial.number, n_trials):
            trial.set_user_attr("fail_reason", "budget already spent when this trial started (not run)")
            raise BudgetSpent()
        return objective(trial)

    def stop(signum, _frame):
        raise _Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    ran = 0
    try:
        while deadline is None or time.time() < deadline:
            settle(study, log)
            if n_trials is not None and finished(study) >= n_trials:
                break
            if n_trials is not None and finished_or_running(study) >= n_trials:
                time.sleep(POLL)   # the last trials run elsewhere; wait in case their worker dies
                continue
            try:
                study.optimize(owned, n_trials=1, catch=(TrialFailed,), gc_after_trial=True)
            except BudgetSpent:
                break
            ran += 1
            after_trial()
    except _Interrupted as e:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get(WORKER) == me:
                _fail_with_reason(study, t, f"{INTERRUPTED} by {e}")
                log(f"trial {t.number}: interrupted by {e}; marked failed (resumes on the next run)")
        raise SystemExit(130)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return ran


def _fail_with_reason(study: optuna.Study, t: FrozenTrial, reason: str) -> None:
    study._storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)   # no public setter outside the objective
    study.tell(t.number, state=TrialState.FAIL)


# ---------------------------------------------------------------- supervisor
class Supervisor:
    """``facesearch study run``: N local worker processes, live progress, restarts, clean stop."""

    def __init__(self, spec: StudySpec, spec_path: Path, url: str | None, workers: int, gpus: list[int] | None,
                 n_trials: int | None, timeout: float | None, log: Callable[[str], None] = print):
        self.spec, self.spec_path, self.url = spec, spec_path, storage_url(url)
        self.workers = workers
        self.gpus = gpus
        self.n_trials = n_trials if n_trials is not None else spec.n_trials
        self.timeout = timeout if timeout is not None else spec.timeout
        self.log = log
        self.log_dir = runs_root(url) / spec.name
        self.procs: dict[int, subprocess.Popen] = {}
        self.next_id = 0
        self.deadline = time.time() + self.timeout if self.timeout else None

    def spawn(self, slot: int) -> None:
        worker_id = self.next_id
        self.next_id += 1
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(self.gpus[slot % len(self.gpus)])
        elif "OMP_NUM_THREADS" not in os.environ:   # CPU workers share the cores instead of oversubscribing them
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.workers))
        timeout = [] if self.deadline is None else ["--timeout", str(max(1.0, self.deadline - time.time()))]
        n = [] if self.n_trials is None else ["--n-trials", str(self.n_trials)]
        cmd = [sys.executable, "-m", "search.cli", "worker", str(self.spec_path), "--storage", self.url,
               "--worker-id", str(worker_id), *n, *timeout]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_dir / f"worker-{worker_id}.log", "a")
        self.procs[slot] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)   # Ctrl-C reaches the supervisor only
        self.procs[slot].worker_id = worker_id
        out.close()

    def run(self, study: optuna.Study, on_tick: Callable[[], None] = lambda: None, tick: float = 1.0) -> int:
        for slot in range(self.workers):
            self.spawn(slot)
        try:
            while self.procs:
                time.sleep(tick)
                self.reap(study)
                on_tick()
        except KeyboardInterrupt:
            self.stop(study, "SIGINT")
            return 130
        return 0

    def budget_spent(self, study: optuna.Study) -> bool:
        if self.deadline and time.time() >= self.deadline:
            return True
        return self.n_trials is not None and finished_or_running(study) >= self.n_trials

    def reap(self, study: optuna.Study) -> None:
        for slot, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.procs[slot]
            if code == 0:
                continue
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
            self.log(f"worker {proc.worker_id} (pid {proc.pid}) {how}; see {self.log_dir}/worker-{proc.worker_id}.log")
            recover_dead_trials(study, {proc.pid}, reason=f"worker {proc.worker_id} {how}", log=self.log)
            if code == 2:
                raise StorageError(self._last_error(proc.worker_id) or f"worker {proc.worker_id} stopped on a user error")
            if not self.budget_spent(study):
                self.spawn(slot)
                self.log(f"started worker {self.procs[slot].worker_id} in its place")

    def _last_error(self, worker_id: int) -> str:
        lines = (self.log_dir / f"worker-{worker_id}.log").read_text().strip().splitlines()
        errors = [l.removeprefix("error: ") for l in lines if l.startswith("error: ")]
        return errors[-1] if errors else ""

    def stop(self, study: optuna.Study, why: str) -> None:
        """Ctrl-C: SIGTERM every worker (each fails its trial with the reason), wait, leave nothing RUNNING."""
        self.log(f"{why}: stopping {len(self.procs)} worker(s)...")
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        pids = {p.pid for p in self.procs.values()}
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get(WORKER, "").rpartition(":")[2] in {str(p) for p in pids}:
                _fail_with_reason(study, t, f"{INTERRUPTED} by {why}")
        self.procs.clear()
