"""``facesearch study submit``: a Slurm job array of workers, through submitit.

Each array task runs one ``facesearch worker`` (one GPU each). Slurm sends the walltime warning
(``--signal=USR2@T``, submitit's signal) T seconds before the time limit; the worker stops its trial,
queues it again in the storage, and exits; the task then requeues its job (``--requeue``) while the study
has trials left, and the requeued job's worker resumes that trial from its checkpoint.

The job script holds no secret: the storage URL is in a file only the user can read (``storage-url-ID``
beside submitit's files, one per submission), which the script exports before it starts the worker.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from facenet.errors import UserError

from ..storage import is_database, storage_url

URL_FILE = "storage-url-{}"   # one per submission: a later submit to another storage must not redirect this one
STOP_WAIT = 150   # seconds a task waits for its worker to mark its trial interrupted (under the signal delay)


class SubmitError(UserError):
    """Options Slurm cannot run, or no Slurm where the job would be submitted."""


@dataclass(frozen=True)
class SlurmOptions:
    """What ``study submit`` asks Slurm for; ``sbatch`` holds extra options (``--sbatch qos=high``)."""

    array: int = 1
    minutes: int = 60
    partition: str | None = None
    gpus_per_task: int | None = 1
    cpus_per_task: int | None = None
    signal_delay: int = 180
    requeue: bool = False
    max_requeues: int = 10
    sbatch: dict[str, str] = field(default_factory=dict)
    setup: tuple[str, ...] = ()

    def check(self, n_trials: int | None) -> None:
        if self.array < 1:
            raise SubmitError(f"--array {self.array}: give at least 1 task")
        if n_trials is not None and self.array > n_trials:
            raise SubmitError(f"--array {self.array} is more tasks than the study's {n_trials} trials: the others "
                              f"would hold a GPU and wait; use --array {n_trials} or less")
        if self.signal_delay >= self.minutes * 60:
            raise SubmitError(f"--signal-delay {self.signal_delay}s leaves nothing of --time {self.minutes}m: "
                              f"ask for more time or a shorter delay")


def worker_command(target: Path) -> list[str]:
    """The command each task runs (the worker id is added from the task's index at run time). One place,
    so that another kind of target (a plan) adds its own command here."""
    return [sys.executable, "-P", "-m", "search.cli", "worker", str(target)]


def slurm_parameters(opts: SlurmOptions, name: str, setup: list[str]) -> dict:
    """submitit's SlurmExecutor parameters (its names; ``additional_parameters`` are sbatch's own)."""
    extra = dict(opts.sbatch)
    if opts.requeue:
        extra["requeue"] = True
    params = {"job_name": f"facesearch-{name}", "time": opts.minutes, "signal_delay_s": opts.signal_delay,
              "setup": [*opts.setup, *setup], "stderr_to_stdout": True, "array_parallelism": opts.array,
              "additional_parameters": extra}
    for key in ("partition", "gpus_per_task", "cpus_per_task"):
        if getattr(opts, key):
            params[key] = getattr(opts, key)
    return params


def setup_lines(command: list[str], url_file: Path, runs: Path) -> list[str]:
    """The script's lines before each task starts: the storage URL read from the user's file (never written
    here), run folders on the shared path, the image cache on node-local disk where the node has one."""
    return [f"# each task runs: {shlex.join(command)} --worker-id $SLURM_ARRAY_TASK_ID",
            f'export FACESEARCH_STORAGE="$(cat {shlex.quote(str(url_file))})"',
            f"export FACESEARCH_RUNS={shlex.quote(str(runs))}",
            'local_disk="${SLURM_TMPDIR:-${TMPDIR:-}}"',
            'if [ -z "${FACESEARCH_CACHE:-}" ] && [ -n "$local_disk" ]; then '
            'export FACESEARCH_CACHE="$local_disk/facesearch-cache"; fi',
            "export PYTHONUNBUFFERED=1"]


def job_script(opts: SlurmOptions, name: str, command: list[str], folder: Path, url_file: Path,
               runs: Path) -> str:
    """The sbatch script submitit writes for the array (what ``--dry-run`` prints)."""
    from submitit.slurm.slurm import _make_sbatch_string   # what SlurmExecutor itself writes

    python = shlex.quote(sys.executable)
    return _make_sbatch_string(command=f"{python} -u -m submitit.core._submit {shlex.quote(str(folder))}",
                               folder=folder, map_count=opts.array,
                               **slurm_parameters(opts, name, setup_lines(command, url_file, runs)))


def write_url_file(path: Path, url: str) -> None:
    """The storage URL in a file only its owner can read (created so, never readable by others first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(url)


def absolute_storage(url: str | None) -> str:
    """The URL, with a journal file's path made absolute (tasks may start in another folder)."""
    url = storage_url(url)
    if is_database(url):
        return url
    return str(Path(url.removeprefix("journal:")).resolve())


def submit(opts: SlurmOptions, name: str, target: Path, url: str | None, runs: Path, folder: Path,
           dry_run: bool = False, log: Callable[[str], None] = print) -> list[str]:
    """Submit the array (or, ``dry_run``, print its script and write nothing); the job ids."""
    command = worker_command(target.resolve())
    folder, runs = folder.resolve(), runs.resolve()
    url_file = folder / URL_FILE.format(secrets.token_hex(4))
    try:
        import submitit
        from submitit.core.utils import FailedJobError
    except ImportError:
        raise SubmitError("study submit needs submitit; install it with: pip install 'facesearch[slurm]'") from None
    if dry_run:
        log(job_script(opts, name, command, folder, url_file, runs))
        return []
    try:
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=opts.max_requeues)
    except RuntimeError as e:   # "Could not detect srun"
        raise SubmitError(f"no Slurm here ({e}); run study submit on a login node, or --dry-run to see the "
                          f"script") from None
    write_url_file(url_file, absolute_storage(url))
    executor.update_parameters(**slurm_parameters(opts, name, setup_lines(command, url_file, runs)))
    task = SlurmTask(command, name, opts.requeue)
    said = io.StringIO()   # submitit prints sbatch's complaint too: the user gets it once, in one line
    try:
        with contextlib.redirect_stderr(said), executor.batch():
            jobs = [executor.submit(task) for _ in range(opts.array)]
    except FailedJobError as e:
        url_file.unlink(missing_ok=True)   # no job will read it
        lines = (str(e) or said.getvalue()).strip().splitlines()
        raise SubmitError(f"sbatch refused the job: {lines[-1] if lines else 'no reason given'}") from None
    return [job.job_id for job in jobs]


class SlurmTask:
    """What one array task runs (pickled by submitit): the worker as a child process, so the worker itself
    handles the walltime signal; on that signal (submitit calls ``checkpoint``) it waits for the worker to
    stop its trial, then asks submitit to requeue the job while the study has trials left."""

    def __init__(self, command: list[str], study: str, requeue: bool):
        self.command, self.study, self.requeue = command, study, requeue
        self.proc: subprocess.Popen | None = None

    def __getstate__(self) -> dict:   # a requeue pickles the task again: without the running child
        return {**self.__dict__, "proc": None}

    def __call__(self) -> int:
        worker_id = os.environ.get("SLURM_ARRAY_TASK_ID", "0")
        self.proc = subprocess.Popen([*self.command, "--worker-id", worker_id])
        # poll, not wait(): submitit's signal handler runs in this thread, and a wait() it interrupted would
        # hold the lock that its own wait for the worker needs
        while (code := self.proc.poll()) is None:
            time.sleep(1)
        if code not in (0, 130):   # 130: stopped by a signal, its trial queued again
            raise RuntimeError(f"facesearch worker exited with status {code}; see the lines above")
        return code

    def checkpoint(self, *args, **kwargs):
        """submitit's hook on the walltime signal: None ends the job, a DelayedSubmission requeues it."""
        from submitit.helpers import DelayedSubmission

        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR2)   # Slurm may have signalled it already; a second is ignored
            try:
                self.proc.wait(timeout=STOP_WAIT)
            except subprocess.TimeoutExpired:
                pass
        why = self.no_requeue()
        if why:
            print(f"job not requeued: {why}", flush=True)
            return None
        print(f"requeueing the job: study {self.study} has trials left", flush=True)
        return DelayedSubmission(self, *args, **kwargs)

    def no_requeue(self) -> str | None:
        """Why this job should not run again, or None: not asked, the study done, or no progress here (a time
        limit too short for start-up and one epoch would requeue forever)."""
        if not self.requeue:
            return "--requeue not asked"
        import optuna

        from ..storage import open_storage

        study = optuna.load_study(study_name=self.study, storage=open_storage())
        if not trials_left(study):
            return "the study is done"
        if self.proc is not None and not trained(study, f"{socket.gethostname()}:{self.proc.pid}"):
            return "its worker trained no epoch in this job; give --time room for start-up and an epoch"
        return None


def trials_left(study) -> int:
    """Trials the study still needs (its stored budget less those finished); a large number without one."""
    from ..record import stored_spec
    from .study import finished

    n_trials = stored_spec(study).get("n_trials")
    return max(0, n_trials - finished(study)) if n_trials else sys.maxsize


def trained(study, worker: str) -> bool:
    """Whether the worker ``host:pid`` finished a trial, or trained an epoch past where its trial's retry
    chain had stopped before."""
    from ..record import WORKER, origin_number
    from .study import FINISHED

    trials = study.get_trials(deepcopy=False)
    for t in trials:
        if t.user_attrs.get(WORKER) != worker:
            continue
        if t.state in FINISHED:
            return True
        before = max((max(p.intermediate_values, default=0) for p in trials
                      if p.number < t.number and origin_number(p) == origin_number(t)), default=0)
        if max(t.intermediate_values, default=0) > before:
            return True
    return False


def minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))
