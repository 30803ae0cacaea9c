"""``facesearch study run``, ``worker``, ``studies``, ``study status`` and ``best``."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from .common import DEVICE_HELP, STORAGE_HELP, app, echo, study_app


def checked_spec(path: Path, url: str | None, device: str = "auto", gpus: list[int] | None = None,
                 warn: bool = True):
    """The spec with its ``from:`` resolved, past every preflight check (nothing written yet)."""
    from ..run.preflight import preflight_study
    from ..spec import load_spec

    def to_stderr(line: str) -> None:
        typer.echo(line, err=True)

    return preflight_study(load_spec(path), url, device, gpus, warn=to_stderr if warn else None)


@study_app.command("run")
def study_run(
    spec_path: Path = typer.Argument(..., metavar="STUDY.yaml", help="Study spec."),
    workers: int = typer.Option(1, help="Worker processes on this machine."),
    gpus: Optional[str] = typer.Option(None, help="GPU indices, e.g. 0,1,2,3: one worker per GPU (overrides --workers)."),
    n_trials: Optional[int] = typer.Option(None, help="Trials in the study in all (default: the spec's budget)."),
    timeout: Optional[float] = typer.Option(None, help="Seconds after which no new trial starts."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
) -> None:
    """Launch N workers on a study and watch it until its budget is spent."""
    from ..run.launch import run_study
    from ..view.status import console as make_console, summary_line, trials_table

    gpu_list = [int(g) for g in gpus.split(",")] if gpus else None
    spec = checked_spec(spec_path, storage, gpus=gpu_list)
    console = make_console()
    start = time.time()
    study, code = run_study(spec, spec_path, storage, workers, gpu_list, n_trials, timeout, console,
                            live=sys.stdout.isatty())
    console.print(trials_table(study))
    if sys.stdout.isatty():   # without a terminal the log lines ended with it
        console.print(summary_line(study, n_trials or spec.n_trials))
    if code:
        console.print(f"stopped; nothing is left running. Resume with: facesearch study run {spec_path}"
                      + (f" --storage {storage}" if storage else ""))
        raise typer.Exit(code)
    console.print(f"done in {time.time() - start:.0f}s; best: facesearch best {spec.name}"
                  + (f" --storage {storage}" if storage else ""))


@app.command()
def worker(
    spec_path: Path = typer.Argument(..., metavar="STUDY.yaml", help="Study spec (the same file on every machine)."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
    worker_id: int = typer.Option(0, help="Distinct per worker: offsets the sampler seed."),
    n_trials: Optional[int] = typer.Option(None, help="Stop when the study holds this many trials."),
    timeout: Optional[float] = typer.Option(None, help="Seconds after which no new trial starts."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
) -> None:
    """Join a study as one worker (run one per GPU on any machine that reaches the storage)."""
    from ..run.tether import tie_to_supervisor
    from ..run.worker import run_worker

    supervised = tie_to_supervisor()   # from study run: stops when it is gone; by hand: tied to nothing
    spec = checked_spec(spec_path, storage, device, warn=not supervised)   # study run has warned already
    ran = run_worker(spec, storage, worker_id, n_trials, timeout, device, log=lambda m: echo(m))
    echo(f"worker {worker_id}: ran {ran} trial(s); budget spent")


@app.command()
def studies(storage: Optional[str] = typer.Option(None, help=STORAGE_HELP)) -> None:
    """List the studies in a storage with their trial counts and best EER."""
    from ..storage import open_storage
    from ..view.status import console, studies_table

    console().print(studies_table(open_storage(storage)))


@study_app.command("status")
def study_status(
    name: str = typer.Argument(..., help="Study name."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
    last: Optional[int] = typer.Option(None, help="Show only the last N trials."),
) -> None:
    """A table of the study's trials (state, EER, params, parameter count, prune reason) and the time left."""
    from ..record import stored_spec
    from ..storage import load_study, open_storage
    from ..view.status import console as make_console, summary_line, trials_table

    study = load_study(name, open_storage(storage), storage)
    console = make_console()
    console.print(trials_table(study, limit=last))
    console.print(summary_line(study, stored_spec(study).get("n_trials")))


@app.command()
def best(
    name: str = typer.Argument(..., help="Study name."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
) -> None:
    """The best trial's val EER, hyper-parameters and parameter count."""
    from ..record import best_trial
    from ..storage import StorageError, load_study, open_storage
    from ..view.status import best_lines

    study = load_study(name, open_storage(storage), storage)
    t = best_trial(study)
    if t is None:
        raise StorageError(f"study {name!r} has no complete trial yet; wait, or see: facesearch study status {name}")
    echo("\n".join(best_lines(study, t)))
