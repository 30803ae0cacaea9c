"""``facesearch study submit``: a Slurm job array of workers, through submitit.

Each array task runs one ``facesearch worker`` (one GPU each). Slurm sends the walltime warning
(``--signal=USR2@T``, submitit's signal) T seconds before the time limit; the worker stops its trial,
queues it again in the storage, and exits; the task then requeues its job (``--requeue``) while the study
has trials left, and the requeued job's worker resumes that trial from its checkpoint.

The job script holds no secret: the storage URL is in a file only the user can read (``storage-url-ID``
beside submitit's files, one per submission), which the script exports before it starts the worker.

A plan (``facesearch plan submit``) is the same array with other commands: task 0 runs the plan (``plan run``,
which resumes where it stopped after a requeue) with one worker of its own, the other tasks follow it
(``worker --plan``); a task requeues while the plan is not finished.
"""
from __future__ import annotations

import contextlib
import dataclasses
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
STOPPED = (0, 130, 128 + signal.SIGTERM, 128 + signal.SIGUSR1, 128 + signal.SIGUSR2)   # worker, plan run
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


@dataclass(frozen=True)
class Target:
    """What a job works on: a study (every task is one worker) or a plan (task 0 runs it, the others follow).
    ``run_args``: options for ``plan run`` (e.g. ``--hours``)."""

    kind: str   # "study" or "plan"
    path: Path
    name: str
    run_args: tuple[str, ...] = ()
    # a plan's requeue rule, given by the caller (search.plan sits above this room): a count that grows as it
    # moves on, and why its job should not run again given that count at the job's start (None: requeue)
    progress: Callable[[str], int] | None = None
    why_done: Callable[[str, int | None], str | None] | None = None


def task_command(target: Target, task: int) -> list[str]:
    """The command array task ``task`` runs: the one place it is built (the worker id, where there is one,
    comes last)."""
    cli = [sys.executable, "-P", "-m", "search.cli"]
    if target.kind == "plan":
        if task == 0:   # the orchestrator: fits, runs the phases in order, finishes; resumes after a requeue
            return [*cli, "plan", "run", str(target.path), "--workers", "1", *target.run_args]
        return [*cli, "worker", "--plan", str(target.path), "--worker-id", str(task)]
    return [*cli, "worker", str(target.path), "--worker-id", str(task)]


def command_lines(target: Target, array: int) -> list[str]:
    """The script's comments saying what each task runs."""
    def each(task: int) -> str:
        return shlex.join(task_command(target, task)[:-1]) + " $SLURM_ARRAY_TASK_ID"

    if target.kind == "plan":
        lines = [f"# task 0 runs the plan: {shlex.join(task_command(target, 0))}"]
        return lines + ([f"# tasks 1-{array - 1} follow it: {each(1)}"] if array > 1 else [])
    return [f"# each task runs: {each(0)}"]


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


def setup_lines(target: Target, array: int, url_file: Path, runs: Path) -> list[str]:
    """The script's lines before each task starts: the storage URL read from the user's file (never written
    here), run folders on the shared path, the image cache on node-local disk where the node has one."""
    return [*command_lines(target, array),
            f'export FACESEARCH_STORAGE="$(cat {shlex.quote(str(url_file))})"',
            f"export FACESEARCH_RUNS={shlex.quote(str(runs))}",
            'local_disk="${SLURM_TMPDIR:-${TMPDIR:-}}"',
            'if [ -z "${FACESEARCH_CACHE:-}" ] && [ -n "$local_disk" ]; then '
            'export FACESEARCH_CACHE="$local_disk/facesearch-cache"; fi',
            "export PYTHONUNBUFFERED=1"]


def job_script(opts: SlurmOptions, target: Target, folder: Path, url_file: Path, runs: Path) -> str:
    """The sbatch script submitit writes for the array (what ``--dry-run`` prints)."""
    from submitit.slurm.slurm import _make_sbatch_string   # what SlurmExecutor itself writes

    python = shlex.quote(sys.executable)
    return _make_sbatch_string(command=f"{python} -u -m submitit.core._submit {shlex.quote(str(folder))}",
                               folder=folder, map_count=opts.array,
                               **slurm_parameters(opts, target.name, setup_lines(target, opts.array, url_file,
                                                                                 runs)))


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


def submit(opts: SlurmOptions, target: Target, url: str | None, runs: Path, folder: Path,
           dry_run: bool = False, log: Callable[[str], None] = print) -> list[str]:
    """Submit the array (or, ``dry_run``, print its script and write nothing); the job ids."""
    target = dataclasses.replace(target, path=target.path.resolve())
    folder, runs = folder.resolve(), runs.resolve()
    url_file = folder / URL_FILE.format(secrets.token_hex(4))
    try:
        import submitit
        from submitit.core.utils import FailedJobError
    except ImportError:
        raise SubmitError(f"{target.kind} submit needs submitit; install it with: pip install "
                          f"'facesearch[slurm]'") from None
    if dry_run:
        log(job_script(opts, target, folder, url_file, runs))
        return []
    try:
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=opts.max_requeues)
    except RuntimeError as e:   # "Could not detect srun"
        raise SubmitError(f"no Slurm here ({e}); run {target.kind} submit on a login node, or --dry-run to see the "
                          f"script") from None
    write_url_file(url_file, absolute_storage(url))
    executor.update_parameters(**slurm_parameters(opts, target.name, setup_lines(target, opts.array, url_file,
                                                                                 runs)))
    task = SlurmTask(target, opts.requeue)
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
    """What one array task runs (pickled by submitit): its command (``task_command``) as a child process, so
    that the child itself handles the walltime signal; on that signal (submitit calls ``checkpoint``) it waits
    for the child to stop its trial, then asks submitit to requeue the job while the study or plan is not
    done."""

    def __init__(self, target: Target, requeue: bool):
        self.target, self.requeue = target, requeue
        self.proc: subprocess.Popen | None = None
        self.progress_at_start: int | None = None

    def __getstate__(self) -> dict:   # a requeue pickles the task again: without the running child
        return {**self.__dict__, "proc": None}

    def __call__(self) -> int:
        task = int(os.environ.get("SLURM_ARRAY_TASK_ID", "0"))
        if self.requeue and self.target.progress is not None:
            self.progress_at_start = self.target.progress(self.target.name)
        self.proc = subprocess.Popen(task_command(self.target, task))
        # poll, not wait(): submitit's signal handler runs in this thread, and a wait() it interrupted would
        # hold the lock that its own wait for the worker needs
        while (code := self.proc.poll()) is None:
            time.sleep(1)
        if code not in STOPPED:
            raise RuntimeError(f"facesearch {self.proc.args[4]} exited with status {code}; see the lines above")
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
        left = "has trials left" if self.target.kind == "study" else "is not finished"
        print(f"requeueing the job: {self.target.kind} {self.target.name} {left}", flush=True)
        return DelayedSubmission(self, *args, **kwargs)

    def no_requeue(self) -> str | None:
        """Why this job should not run again, or None: not asked, the study or plan done, or no progress here
        (a time limit too short for start-up and one epoch would requeue forever)."""
        if not self.requeue:
            return "--requeue not asked"
        if self.target.why_done is not None:
            return self.target.why_done(self.target.name, self.progress_at_start)
        import optuna

        from ..storage import open_storage

        study = optuna.load_study(study_name=self.target.name, storage=open_storage())
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
