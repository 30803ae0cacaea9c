"""Commands for clusters: ``storage serve`` (a gRPC storage proxy for nodes without a database server),
``study submit`` (a Slurm job array of workers) and ``plan submit`` (the same array running a plan)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import Storage, app, echo, study_app
from .plan import plan_app

storage_app = typer.Typer(help="Storages for clusters: serve one to many nodes.", no_args_is_help=True)
app.add_typer(storage_app, name="storage")


@storage_app.command("serve")
def storage_serve(
    storage: Storage = None,
    port: int = typer.Option(13000, min=1, max=65535, help="Port to listen on."),
    host: str = typer.Option("0.0.0.0", help="Interface to listen on (0.0.0.0: every one; 127.0.0.1: this "
                                             "node only)."),
) -> None:
    """Hold a storage (a journal file on this node's disk, or a database) and serve it to workers on any node
    as grpc://HOST:PORT, through Optuna's gRPC proxy. Runs until stopped (Ctrl-C, SIGTERM)."""
    from ..proxy import serve
    from ..storage import open_storage, storage_url

    if storage_url(storage).startswith("grpc://"):
        from ..proxy import ProxyError

        raise ProxyError("storage serve --storage: give the journal file or database to serve, not a grpc:// URL")
    serve(open_storage(storage), host, port, log=echo)


# the Slurm options study submit and plan submit share
Array = Annotated[int, typer.Option("--array", help="Tasks in the job array: one worker (one GPU) each.")]
Time = Annotated[str, typer.Option("--time", help="Each task's time limit: 90m, 4h, 1h30m, 2d or seconds.")]
Partition = Annotated[Optional[str], typer.Option(help="Slurm partition.")]
GpusPerTask = Annotated[int, typer.Option(min=0, help="GPUs per task (0: a CPU-only cluster).")]
CpusPerTask = Annotated[Optional[int], typer.Option(min=1, help="CPU cores per task (data loading).")]
Sbatch = Annotated[list[str], typer.Option("--sbatch", metavar="OPTION=VALUE", help="Another sbatch option, e.g. "
                                           "--sbatch qos=high --sbatch account=lab (repeat it).")]
Setup = Annotated[list[str], typer.Option("--setup", metavar="LINE", help="A shell line each task runs first, e.g. "
                                          "'module load cuda' (repeat it).")]
SignalDelay = Annotated[int, typer.Option(min=10, help="Seconds before the time limit at which Slurm warns each "
                                                       "task (SIGUSR2): its worker stops the trial cleanly.")]
Requeue = Annotated[bool, typer.Option("--requeue", help="A task that reaches its time limit requeues its job "
                                                         "while the study (or plan) is not done.")]
MaxRequeues = Annotated[int, typer.Option(min=0, help="Most time-limit requeues of one task (with --requeue).")]
Folder = Annotated[Optional[Path], typer.Option(help="Job files and logs (default runs/NAME/slurm beside the "
                                                     "storage); must be on a file system every node sees.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the job script; submit and write nothing.")]


@study_app.command("submit")
def study_submit(
    spec_path: Path = typer.Argument(..., metavar="STUDY", help="Study spec file, or a built-in study's name."),
    array: Array = 1, time: Time = "1h", partition: Partition = None, gpus_per_task: GpusPerTask = 1,
    cpus_per_task: CpusPerTask = None, sbatch: Sbatch = [], setup: Setup = [], signal_delay: SignalDelay = 180,
    requeue: Requeue = False, max_requeues: MaxRequeues = 10, folder: Folder = None, dry_run: DryRun = False,
    storage: Storage = None,
) -> None:
    """Submit a Slurm job array of workers on a study (through submitit). The storage URL goes in a file only
    you can read, never in the script; the image cache goes to node-local disk ($SLURM_TMPDIR, $TMPDIR)."""
    from ..run.submit import Target
    from .study import checked_spec

    opts = _options(array, time, partition, gpus_per_task, cpus_per_task, sbatch, setup, signal_delay, requeue,
                    max_requeues)
    # the login node has no GPU to check: the workers check their device when they start
    spec = checked_spec(spec_path, storage, device="cpu") if not dry_run else _spec_only(spec_path)
    opts.check(spec.n_trials)
    _submit(opts, Target("study", spec.source, spec.name), storage, folder, dry_run, time)


@plan_app.command("submit")
def plan_submit(
    plan: str = typer.Argument(..., metavar="PLAN", help="Plan file, or a shipped plan's name (course, quickstart)."),
    hours: Optional[float] = typer.Option(None, help="GPU-hours for the whole plan (default: the plan's hours:)."),
    array: Array = 1, time: Time = "1h", partition: Partition = None, gpus_per_task: GpusPerTask = 1,
    cpus_per_task: CpusPerTask = None, sbatch: Sbatch = [], setup: Setup = [], signal_delay: SignalDelay = 180,
    requeue: Requeue = False, max_requeues: MaxRequeues = 10, folder: Folder = None, dry_run: DryRun = False,
    storage: Storage = None,
) -> None:
    """Submit a Slurm job array that runs a plan (through submitit): task 0 runs it (facesearch plan run, one
    worker; after a requeue it resumes where it stopped), tasks 1..N-1 follow its active phase (facesearch
    worker --plan). The storage URL goes in a file only you can read, never in the script."""
    from facenet.errors import ConfigError

    from ..builtin import resolve_plan
    from ..plan.requeue import plan_done, plan_progress
    from ..plan.schema import load_plan, plan_name
    from ..run.submit import Target

    opts = _options(array, time, partition, gpus_per_task, cpus_per_task, sbatch, setup, signal_delay, requeue,
                    max_requeues)
    opts.check(None)
    path = resolve_plan(plan)
    if dry_run:   # the plan's name only: a dry run reads nothing else
        name = plan_name(path)
    else:
        from ..plan.runner import preflight_plan

        spec = load_plan(path)
        if hours is None and spec.hours is None:
            raise ConfigError(f"{spec.source}: the plan has no hours:; give --hours H")
        # the login node has no GPU to check: task 0 checks its device when it starts
        preflight_plan(spec, storage, device="cpu", warn=echo)
        name = spec.name
    run_args = ("--hours", str(hours)) if hours is not None else ()
    target = Target("plan", path, name, run_args, progress=plan_progress, why_done=plan_done)
    _submit(opts, target, storage, folder, dry_run, time)


def _options(array, time, partition, gpus_per_task, cpus_per_task, sbatch, setup, signal_delay, requeue,
             max_requeues):
    """The ``SlurmOptions`` both submit commands were given."""
    from ..run.submit import SlurmOptions, SubmitError, minutes
    from ..spec import parse_duration

    extra = {}
    for option in sbatch:
        key, eq, value = option.lstrip("-").partition("=")
        if not key:
            raise SubmitError(f"--sbatch {option!r}: write OPTION=VALUE (or OPTION alone), e.g. qos=high")
        extra[key] = value if eq else True
    return SlurmOptions(array=array, minutes=minutes(parse_duration(time)), partition=partition,
                        gpus_per_task=gpus_per_task or None, cpus_per_task=cpus_per_task, signal_delay=signal_delay,
                        requeue=requeue, max_requeues=max_requeues, sbatch=extra, setup=tuple(setup))


def _submit(opts, target, storage: Optional[str], folder: Optional[Path], dry_run: bool, time: str) -> None:
    from ..run.submit import submit
    from ..storage import redact, runs_root, storage_url

    runs = runs_root(storage)
    where = folder or runs / target.name / "slurm"
    jobs = submit(opts, target, storage, runs, where, dry_run, echo)
    if dry_run:
        return
    tasks = f"{opts.array} task(s) on study {target.name}" if target.kind == "study" else \
        f"plan {target.name} (task 0 runs it, {opts.array - 1} follow)"
    echo(f"submitted Slurm job {jobs[0].split('_')[0]}: {tasks} ({redact(storage_url(storage))}); "
         f"logs: {where}/<job>_<task>_0_log.out")
    echo(f"each task stops its trial on SIGUSR2 {opts.signal_delay}s before its {time} limit"
         + (f" and requeues its job while the {target.kind} is not done" if opts.requeue
            else "; the next job resumes it")
         + f"; watch with: facesearch {target.kind} status {target.path if target.kind == 'plan' else target.name}")


def _spec_only(spec_path: Path):
    """The spec as written (a dry run reads nothing else)."""
    from ..builtin import resolve_study
    from ..spec import load_spec

    return load_spec(resolve_study(spec_path))
