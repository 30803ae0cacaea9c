"""``facesearch study run``: N local worker processes (one per GPU when GPUs are given, each with its own
sampler seed), live progress, a dead worker replaced and its trial queued again, a clean stop on Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from ..record import INTERRUPTED, WORKER
from ..spec import StudySpec
from ..storage import StorageError, runs_root, storage_url
from .recovery import fail_with_reason, recover_dead_trials
from .study import finished_or_running


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
                fail_with_reason(study, t, f"{INTERRUPTED} by {why}")
        self.procs.clear()
