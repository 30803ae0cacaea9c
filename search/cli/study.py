"""``facesearch study run``, ``worker``, ``studies``, ``study status`` and ``best``."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from .common import Device, Json, Storage, Timeout, app, echo, seconds, study_app


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
    timeout: Timeout = None,
    storage: Storage = None,
) -> None:
    """Launch N workers on a study and watch it until its budget is spent."""
    from ..run.launch import run_study
    from ..view.status import console as make_console, trials_table

    limit = seconds(timeout)
    spec = load_spec(spec_path, storage)
    console = make_console()
    start = time.time()
    study, code = run_study(spec, spec_path, storage, workers, [int(g) for g in gpus.split(",")] if gpus else None,
                            n_trials, limit, console)
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
    storage: Storage = None,
    worker_id: int = typer.Option(0, help="Distinct per worker: offsets the sampler seed."),
    n_trials: Optional[int] = typer.Option(None, help="Stop when the study holds this many trials."),
    timeout: Timeout = None,
    device: Device = "auto",
) -> None:
    """Join a study as one worker (run one per GPU on any machine that reaches the storage)."""
    from ..run.worker import run_worker

    limit = seconds(timeout)
    spec = load_spec(spec_path, storage)
    ran = run_worker(spec, storage, worker_id, n_trials, limit, device, log=lambda m: echo(m))
    echo(f"worker {worker_id}: ran {ran} trial(s); budget spent")


@app.command()
def studies(storage: Storage = None, as_json: Json = False) -> None:
    """List the studies in a storage with their trial counts and best EER."""
    from ..storage import open_storage
    from ..view.status import console, studies_json, studies_table

    store = open_storage(storage)
    if as_json:
        echo(json.dumps(studies_json(store), indent=2))
    else:
        console().print(studies_table(store))


@study_app.command("status")
def study_status(
    name: str = typer.Argument(..., help="Study name."),
    storage: Storage = None,
    last: Optional[int] = typer.Option(None, help="Show only the last N trials."),
    as_json: Json = False,
) -> None:
    """A table of the study's trials (state, EER, params, parameter count, prune reason) and the time left."""
    from ..record import stored_spec
    from ..storage import load_study, open_storage
    from ..view.status import console as make_console, status_json, summary_line, trials_table

    study = load_study(name, open_storage(storage), storage)
    n_trials = stored_spec(study).get("n_trials")
    if as_json:
        echo(json.dumps(status_json(study, n_trials, last), indent=2))
        return
    console = make_console()
    console.print(trials_table(study, limit=last))
    console.print(summary_line(study, n_trials))


@study_app.command("delete")
def study_delete(
    name: str = typer.Argument(..., help="Study name."),
    storage: Storage = None,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
) -> None:
    """Delete a study and its trials from the storage (run folders stay on disk)."""
    import optuna

    from ..storage import load_study, open_storage, runs_root

    store = open_storage(storage)
    study = load_study(name, store, storage)
    if not yes:
        typer.confirm(f"delete study {name!r} and its {len(study.trials)} trial(s)?", abort=True)
    optuna.delete_study(study_name=name, storage=store)
    echo(f"deleted study {name}; its run folder {runs_root(storage) / name} is kept (remove it by hand)")


@app.command()
def best(name: str = typer.Argument(..., help="Study name."), storage: Storage = None,
         top: int = typer.Option(5, min=1, help="Top trials to list and compare with the best."),
         as_json: Json = False) -> None:
    """The top trials with 95% intervals; marks those the val list cannot tell from the best."""
    from ..storage import load_study, open_storage
    from ..view.best import best_json, best_view
    from ..view.status import console

    study = load_study(name, open_storage(storage), storage)
    if as_json:
        echo(json.dumps(best_json(study, top), indent=2))
    else:
        console().print(best_view(study, top))
