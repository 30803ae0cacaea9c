"""Commands for clusters: ``storage serve`` (a gRPC storage proxy for nodes without a database server) and
``study submit`` (a Slurm job array of workers)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import Storage, app, echo, study_app

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
    from ..run.proxy import serve
    from ..storage import open_storage, storage_url

    if storage_url(storage).startswith("grpc://"):
        from ..run.proxy import ProxyError

        raise ProxyError("storage serve --storage: give the journal file or database to serve, not a grpc:// URL")
    serve(open_storage(storage), host, port, log=echo)


@study_app.command("submit")
def study_submit(
    spec_path: Path = typer.Argument(..., metavar="STUDY", help="Study spec file, or a built-in study's name."),
    array: int = typer.Option(1, "--array", help="Tasks in the job array: one worker (one GPU) each."),
    time: str = typer.Option("1h", "--time", help="Each task's time limit: 90m, 4h, 1h30m, 2d or seconds."),
    partition: Optional[str] = typer.Option(None, help="Slurm partition."),
    gpus_per_task: int = typer.Option(1, min=0, help="GPUs per task (0: a CPU-only cluster)."),
    cpus_per_task: Optional[int] = typer.Option(None, min=1, help="CPU cores per task (data loading)."),
    sbatch: list[str] = typer.Option([], "--sbatch", metavar="OPTION=VALUE",
                                     help="Another sbatch option, e.g. --sbatch qos=high --sbatch account=lab "
                                          "(repeat it)."),
    setup: list[str] = typer.Option([], "--setup", metavar="LINE",
                                    help="A shell line each task runs first, e.g. 'module load cuda' (repeat it)."),
    signal_delay: int = typer.Option(180, min=10, help="Seconds before the time limit at which Slurm warns each "
                                                       "task (SIGUSR2): its worker stops the trial cleanly."),
    requeue: bool = typer.Option(False, "--requeue", help="A task that reaches its time limit requeues its job "
                                                          "while the study has trials left."),
    max_requeues: int = typer.Option(10, min=0, help="Most time-limit requeues of one task (with --requeue)."),
    folder: Optional[Path] = typer.Option(None, help="Job files and logs (default runs/STUDY/slurm beside the "
                                                     "storage); must be on a file system every node sees."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the job script; submit and write nothing."),
    storage: Storage = None,
) -> None:
    """Submit a Slurm job array of workers on a study (through submitit). The storage URL goes in a file only
    you can read, never in the script; the image cache goes to node-local disk ($SLURM_TMPDIR, $TMPDIR)."""
    from ..run.submit import SlurmOptions, SubmitError, minutes, submit
    from ..spec import parse_duration
    from ..storage import redact, runs_root, storage_url
    from .study import checked_spec

    extra = {}
    for option in sbatch:
        key, eq, value = option.lstrip("-").partition("=")
        if not key:
            raise SubmitError(f"--sbatch {option!r}: write OPTION=VALUE (or OPTION alone), e.g. qos=high")
        extra[key] = value if eq else True
    opts = SlurmOptions(array=array, minutes=minutes(parse_duration(time)), partition=partition,
                        gpus_per_task=gpus_per_task or None, cpus_per_task=cpus_per_task, signal_delay=signal_delay,
                        requeue=requeue, max_requeues=max_requeues, sbatch=extra, setup=tuple(setup))
    # the login node has no GPU to check: the workers check their device when they start
    spec = checked_spec(spec_path, storage, device="cpu") if not dry_run else _spec_only(spec_path)
    opts.check(spec.n_trials)
    runs = runs_root(storage)
    jobs = submit(opts, spec.name, spec.source, storage, runs, folder or runs / spec.name / "slurm", dry_run, echo)
    if dry_run:
        return
    where = folder or runs / spec.name / "slurm"
    echo(f"submitted Slurm job {jobs[0].split('_')[0]}: {array} task(s) on study {spec.name} "
         f"({redact(storage_url(storage))}); logs: {where}/<job>_<task>_0_log.out")
    echo(f"each task stops its trial on SIGUSR2 {signal_delay}s before its {time} limit"
         + (" and requeues its job while trials are left" if requeue else "; the next job resumes it")
         + f"; watch with: facesearch study status {spec.name}")


def _spec_only(spec_path: Path):
    """The spec as written (a dry run reads nothing else)."""
    from ..builtin import resolve_study
    from ..spec import load_spec

    return load_spec(resolve_study(spec_path))
