"""``facesearch study run``, ``worker``, ``studies``, ``study status`` and ``best``."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from .common import Device, Json, Storage, Timeout, app, echo, seconds, study_app


def checked_spec(path: Path, url: str | None, device: str = "auto", gpus: list[int] | None = None,
                 warn: bool = True):
    """The spec with its ``from:`` resolved, past every preflight check (nothing written yet)."""
    from ..builtin import resolve_study
    from ..run.preflight import preflight_study
    from ..spec import load_spec

    def to_stderr(line: str) -> None:
        typer.echo(line, err=True)

    return preflight_study(load_spec(resolve_study(path)), url, device, gpus, warn=to_stderr if warn else None)


@study_app.command("run")
def study_run(
    spec_path: Path = typer.Argument(..., metavar="STUDY", help="Study spec file, or a built-in study's name."),
    workers: int = typer.Option(1, help="Worker processes on this machine (at least 1; at most one per GPU, or "
                                        "per CPU core that memory can feed, unless --force-workers)."),
    force_workers: bool = typer.Option(False, "--force-workers", help="Start --workers N even above what this "
                                                                      "machine holds."),
    gpus: Optional[str] = typer.Option(None, help="GPU indices, e.g. 0,1,2,3: one worker per GPU "
                                                  "(overrides --workers)."),
    n_trials: Optional[int] = typer.Option(None, help="Trials in the study in all (default: the spec's budget)."),
    timeout: Timeout = None,
    storage: Storage = None,
) -> None:
    """Launch N workers on a study and watch it until its budget is spent."""
    from ..run.launch import run_study
    from ..view.status import summary_line, trials_table
    from ..view.trial_log import log_line
    from ..view.watch import console as make_console, watcher

    limit = seconds(timeout)
    gpu_list = [int(g) for g in gpus.split(",")] if gpus else None
    spec = checked_spec(spec_path, storage, gpus=gpu_list)
    if not gpu_list:   # --gpus: one worker per GPU, checked by the preflight
        from ..run.capacity import check_workers

        check_workers(workers, spec, force=force_workers)
    console = make_console()
    start = time.time()
    live = sys.stdout.isatty()
    study, code = run_study(spec, spec.source, storage, workers, gpu_list, n_trials, limit,
                            watch=watcher(console, live), log=console.log if live else log_line)
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
    spec_path: Optional[Path] = typer.Argument(None, metavar="STUDY", help="Study spec file (the same on every "
                                               "machine), or a built-in study's name."),
    storage: Storage = None,
    worker_id: int = typer.Option(0, help="Distinct per worker: offsets the sampler seed."),
    n_trials: Optional[int] = typer.Option(None, help="Stop when the study holds this many trials."),
    timeout: Timeout = None,
    device: Device = "auto",
    plan: Optional[str] = typer.Option(None, help="Follow this plan's active phase instead of one study "
                                                  "(plan file or shipped plan's name); stops when it ends."),
) -> None:
    """Join a study as one worker (run one per GPU on any machine that reaches the storage), or follow a plan."""
    from ..run.tether import reporting_exit, tie_to_supervisor
    from ..run.worker import run_worker

    if plan is not None or spec_path is None:
        from ..plan.follow import follow_plan
        from .plan import _load

        if plan is None:
            from facenet.errors import ConfigError

            raise ConfigError("worker: give a STUDY (spec file or built-in name), or --plan PLAN to follow a plan")
        joined = follow_plan(_load(plan), storage, worker_id, device, log=lambda m: echo(m))
        echo(f"worker {worker_id}: followed {len(joined)} phase(s): {', '.join(joined) or 'none'}")
        return
    limit = seconds(timeout)
    supervised = tie_to_supervisor()   # from study run: stops when it is gone; by hand: tied to nothing
    with reporting_exit():   # study run reads the error this worker stops on from there, not from its log
        spec = checked_spec(spec_path, storage, device, warn=not supervised)   # study run has warned already
        ran = run_worker(spec, storage, worker_id, n_trials, limit, device, log=lambda m: echo(m))
    echo(f"worker {worker_id}: ran {ran} trial(s); budget spent")


@app.command()
def studies(storage: Storage = None, as_json: Json = False,
            builtin: bool = typer.Option(False, "--builtin", help="List the studies shipped with facesearch.")) -> None:
    """List the studies in a storage with their trial counts and best EER (or the built-in ones)."""
    from ..storage import open_storage
    from ..view.catalog import builtin_json, builtin_table
    from ..view.status import studies_json, studies_table
    from ..view.watch import console

    if builtin:
        if as_json:
            echo(json.dumps(builtin_json(), indent=2))
        else:
            console().print(builtin_table())
        return
    store = open_storage(storage, create=False)
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
    """A table of the study's trials (state, EER, params, parameter count, time and its estimate, prune
    reason), the time left, GPU-hours spent and left under a budget, and successive-halving rungs."""
    from ..record import stored_spec
    from ..storage import load_study, open_storage
    from ..view.rungs import rung_rows, rungs_table
    from ..view.status import status_json, summary_line, trials_table
    from ..view.watch import console as make_console

    study = load_study(name, open_storage(storage, create=False), storage)
    n_trials = stored_spec(study).get("n_trials")
    if as_json:
        echo(json.dumps(status_json(study, n_trials, last), indent=2))
        return
    console = make_console()
    console.print(trials_table(study, limit=last))
    console.print(summary_line(study, n_trials, stored_spec(study).get("hours")))
    spec = stored_spec(study)
    if rows := rung_rows(study, spec.get("pruner") or {}, spec.get("epochs")):
        console.print(rungs_table(rows, f"rungs of the {spec['pruner']['name']} pruner (epochs)"))


@study_app.command("init")
def study_init(
    name: str = typer.Argument(..., help="Study name (letters, digits, '_', '.', '-'; not '.' or '..')."),
    out: Optional[Path] = typer.Option(None, help="File to write (default: NAME.yaml here)."),
) -> None:
    """Write a commented starter spec to edit: data, fixed fields, a space, sampler, pruner, cap, budget."""
    from ..spec import SpecError
    from ..spec.parse import name_problem
    from ..spec.starter import starter_spec

    if problem := name_problem(name):
        raise SpecError(f"study init {problem}")
    path = out or Path(f"{name}.yaml")
    if path.exists():
        raise SpecError(f"{path} exists; choose another --out or name")
    path.write_text(starter_spec(name))
    echo(f"wrote {path}; edit it, then: facesearch study run {path}")


@study_app.command("delete")
def study_delete(
    name: str = typer.Argument(..., help="Study name."),
    storage: Storage = None,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    runs: bool = typer.Option(False, "--runs", help="Also remove the study's run folder (its checkpoints)."),
) -> None:
    """Delete a study and its trials from the storage; its run folder stays on disk unless --runs."""
    import optuna

    from ..run.folders import STAMP, known_folder, remove_study_folders
    from ..storage import load_study, open_storage, runs_root

    store = open_storage(storage, create=False)
    study = load_study(name, store, storage)
    stamp = study.user_attrs.get(STAMP)
    folder = known_folder(runs_root(storage), study)
    if not yes:
        what = f" and its run folder {folder}" if runs else ""
        typer.confirm(f"delete study {name!r} and its {len(study.trials)} trial(s){what}?", abort=True)
    optuna.delete_study(study_name=name, storage=store)
    if runs:
        removed = remove_study_folders(runs_root(storage), name, stamp)
        echo(f"deleted study {name} and its run folder(s) {', '.join(map(str, removed)) or '(none on disk)'}")
    else:   # a new study of this name gets a folder of its own: it never resumes these checkpoints
        echo(f"deleted study {name}; its run folder {folder} is kept (a new study {name!r} will not use it); "
             f"remove it with --runs next time, or by hand")


@app.command()
def best(name: str = typer.Argument(..., help="Study name."), storage: Storage = None,
         top: int = typer.Option(5, min=1, help="Top trials to list and compare with the best."),
         as_json: Json = False) -> None:
    """The top trials with 95% intervals; marks those the val list cannot tell from the best."""
    from ..storage import load_study, open_storage
    from ..view.best import best_json, best_view
    from ..view.watch import console

    study = load_study(name, open_storage(storage, create=False), storage)
    if as_json:
        echo(json.dumps(best_json(study, top), indent=2))
    else:
        console().print(best_view(study, top))
