"""``facesearch study run``: N local worker processes (one per GPU when GPUs are given, each with its own
sampler seed), live progress, a dead worker replaced and its trial queued again, a clean stop on Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from facenet.devices import worker_gpu_env

from ..interrupts import raise_when_safe
from ..record import WORKER, WorkerId
from ..spec import StudySpec
from ..storage import runs_root, storage_url
from ..track.registry import target_flags
from .breaker import REPEATS, StudyStopped
from .recovery import STOP_SIGNALS, interrupt, recover_dead_trials
from .study import finished, finished_or_running
from .tether import WorkerExit, tether_env


@dataclass
class _Worker:
    """A worker process this supervisor started: its number, process, log and exit-report files."""

    id: int
    proc: subprocess.Popen
    log: Path
    result: Path

    def exit(self) -> WorkerExit:
        return WorkerExit.read(self.result)


class _Terminated(BaseException):
    """SIGTERM (``timeout``, ``scancel``, a Kubernetes stop) or a walltime warning (SIGUSR1/2) to the
    supervisor: its workers are stopped (each queues its trial again)."""


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
        self.procs: dict[int, _Worker] = {}
        self.next_id = 0
        self.deadline = time.time() + self.timeout if self.timeout else None
        self.deaths, self.finished_at_death = 0, -1   # workers dead in a row with no trial finished between

    def spawn(self, slot: int) -> None:
        worker_id = self.next_id
        self.next_id += 1
        log, result = self.log_dir / f"worker-{worker_id}.log", self.log_dir / f"worker-{worker_id}.exit.json"
        result.unlink(missing_ok=True)
        env = tether_env(dict(os.environ, PYTHONUNBUFFERED="1"), result)   # the worker dies with this process
        if self.gpus:
            env.update(worker_gpu_env(self.gpus[slot % len(self.gpus)]))   # through the parent's own mask
        elif "OMP_NUM_THREADS" not in os.environ:   # CPU workers share the cores instead of oversubscribing them
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.workers))
        timeout = [] if self.deadline is None else ["--timeout", str(max(1.0, self.deadline - time.time()))]
        n = [] if self.n_trials is None else ["--n-trials", str(self.n_trials)]
        # -P: a search.py (or facenet/) in the working folder must not shadow the package
        cmd = [sys.executable, "-P", "-m", "search.cli", "worker", str(self.spec_path), "--storage", self.url,
               "--worker-id", str(worker_id), *n, *timeout, *target_flags(self.spec.tracking)]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)   # Ctrl-C reaches the supervisor only
        self.procs[slot] = _Worker(worker_id, proc, log, result)
        self.log(f"worker {worker_id} started (pid {proc.pid})")

    def run(self, study: optuna.Study, on_tick: Callable[[], None] = lambda: None, tick: float = 1.0) -> int:
        """Run the workers to the end: 0, or 128 + the signal that stopped it; ``StudyStopped`` when a
        worker stopped the study (the others are stopped first)."""
        def terminate(signum, _frame):
            for s in stops:   # a second signal must not cut the stop short
                signal.signal(s, signal.SIG_IGN)
            raise_when_safe(_Terminated(signal.Signals(signum).name))   # or once a storage write ends

        def ctrl_c(_signum, _frame):   # Python's own KeyboardInterrupt, but never inside a storage write
            raise_when_safe(KeyboardInterrupt())

        main = threading.current_thread() is threading.main_thread()
        # SIGTERM, and the walltime warnings (sbatch --signal=B:USR1@T reaches the batch shell's study run)
        stops = [s for s in STOP_SIGNALS if s != signal.SIGINT]
        previous = {s: signal.signal(s, terminate) for s in stops} if main else {}
        if main and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:   # ignored: a script's `study run &`
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, ctrl_c)
        try:
            for slot in range(self.workers):
                self.spawn(slot)
            while self.procs:
                time.sleep(tick)
                self.reap(study)
                on_tick()
        except KeyboardInterrupt:
            self.stop(study, "SIGINT")
            return 128 + signal.SIGINT
        except _Terminated as e:
            self.stop(study, str(e))
            return 128 + signal.Signals[str(e)]
        except StudyStopped:
            self.stop(study, "study stopped")
            raise
        finally:
            for s, handler in previous.items():
                signal.signal(s, signal.SIG_DFL if handler is None else handler)
        return 0

    def budget_spent(self, study: optuna.Study) -> bool:
        if self.deadline and time.time() >= self.deadline:
            return True
        return self.n_trials is not None and finished_or_running(study) >= self.n_trials

    def reap(self, study: optuna.Study) -> None:
        for slot, w in list(self.procs.items()):
            code = w.proc.poll()
            if code is None:
                continue
            del self.procs[slot]
            if code == 0:
                continue
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
            self.log(f"worker {w.id} (pid {w.proc.pid}) {how}; see {w.log}")
            recover_dead_trials(study, {w.proc.pid}, reason=f"worker {w.id} {how}", log=self.log)
            ended = w.exit()
            if code == 2:
                raise StudyStopped(ended.error or f"worker {w.id} stopped on a user error")
            done = finished(study)
            self.deaths = self.deaths + 1 if done == self.finished_at_death else 1
            self.finished_at_death = done
            if self.deaths >= REPEATS:
                raise StudyStopped(f"{self.deaths} workers in a row died with no trial finished in between; "
                                   f"the last {how}: {ended.error or f'see {w.log}'}")
            if not self.budget_spent(study):
                self.log(f"replacing worker {w.id}")
                self.spawn(slot)

    def stop(self, study: optuna.Study, why: str) -> None:
        """Ctrl-C: SIGTERM every worker (each fails its trial with the reason), wait, leave nothing RUNNING."""
        self.log(f"{why}: stopping {len(self.procs)} worker(s)...")
        procs = [w.proc for w in self.procs.values()]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        pids = {p.pid for p in procs}
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = WorkerId.parse(t.user_attrs.get(WORKER))
            if owner is not None and owner.here and owner.pid in pids:
                interrupt(study, t, why, self.log)
        self.procs.clear()
