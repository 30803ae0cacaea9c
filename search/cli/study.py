"""``facesearch study run``, ``worker``, ``studies``, ``study status`` and ``best``."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from .common import DEVICE_HELP, STORAGE_HELP, app, echo, study_app


def load_spec(path: Path, url: str | None):
    """The spec with its ``from:`` resolved against the storage."""
    from ..spec import apply_from, load_spec as load
    from ..storage import open_storage

    spec = load(path)
    return apply_from(spec, open_storage(url)) if spec.from_ else spec


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
    from ..view.status import console as make_console, trials_table

    spec = load_spec(spec_path, storage)
    console = make_console()
    start = time.time()
    study, code = run_study(spec, spec_path, storage, workers, [int(g) for g in gpus.split(",")] if gpus else None,
                            n_trials, timeout, console)
    console.print(trials_table(study))
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
    from ..run.worker import run_worker

    spec = load_spec(spec_path, storage)
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
    """A table of the study's trials (state, EER, params, parameter count, time and its estimate, prune
    reason), the time left, GPU-hours spent and left under a budget, and successive-halving rungs."""
    from ..record import stored_spec
    from ..storage import load_study, open_storage
    from ..view.rungs import rung_rows, rungs_table
    from ..view.status import console as make_console, summary_line, trials_table

    study = load_study(name, open_storage(storage), storage)
    console = make_console()
    console.print(trials_table(study, limit=last))
    spec = stored_spec(study)
    console.print(summary_line(study, spec.get("n_trials"), spec.get("hours")))
    if rows := rung_rows(study, spec.get("pruner") or {}, spec.get("epochs")):
        console.print(rungs_table(rows, f"rungs of the {spec['pruner']['name']} pruner (epochs)"))


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
