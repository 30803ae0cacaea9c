"""``facesearch study run``, ``worker``, ``studies``, ``study status`` and ``best``."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from .common import (STUDY, Device, Format, Json, LogFormat, Mlflow, Storage, Tensorboard, Timeout, Wandb, app,
                     echo, env_epilog, seconds, study_app, tracking_targets, use_log_format)


def checked_spec(path: Path, url: str | None, device: str = "auto", gpus: list[int] | None = None,
                 warn: bool = True):
    """The spec with its ``from:`` resolved, past every preflight check (nothing written yet)."""
    from ..builtin import resolve_study
    from ..run.preflight import preflight_study
    from ..spec import load_spec

    def to_stderr(line: str) -> None:
        typer.echo(line, err=True)

    return preflight_study(load_spec(resolve_study(path)), url, device, gpus, warn=to_stderr if warn else None)


@study_app.command("run", epilog=env_epilog(*STUDY))
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
    log_format: LogFormat = "text",
    mlflow: Mlflow = None,
    wandb: Wandb = None,
    tensorboard: Tensorboard = None,
) -> None:
    """Launch N workers on a study and watch it until its budget is spent (a live view on a terminal, dated
    log lines otherwise; each worker's lines go to runs/STUDY/worker-N.log)."""
    import dataclasses

    use_log_format(log_format)
    from ..run.launch import run_study
    from ..logline import log_line
    from ..run.tracked import end_study, reachable_targets
    from ..storage import runs_root
    from ..view.status import summary_line, trials_table
    from ..view.watch import console as make_console, watcher

    limit = seconds(timeout)
    gpu_list = [int(g) for g in gpus.split(",")] if gpus else None
    spec = checked_spec(spec_path, storage, gpus=gpu_list)
    if not gpu_list:   # --gpus: one worker per GPU, checked by the preflight
        from ..run.capacity import check_workers

        check_workers(workers, spec, force=force_workers)
    targets = tracking_targets(spec.tracking, mlflow, wandb, tensorboard)
    # the study's parent run made once here, before the workers; a backend that does not answer: one warning
    spec = dataclasses.replace(spec, tracking=reachable_targets(spec, targets, runs_root(storage),
                                                                lambda m: typer.echo(m, err=True)))
    console = make_console()
    start = time.time()
    live = sys.stdout.isatty()
    study, code = run_study(spec, spec.source, storage, workers, gpu_list, n_trials, limit,
                            watch=watcher(console, live), log=console.log if live else log_line)
    if not code:   # the parent run ends with the study's counts and best trial
        end_study(spec, study, runs_root(storage), lambda m: typer.echo(m, err=True))
    console.print(trials_table(study))
    if sys.stdout.isatty():   # without a terminal the log lines ended with it
        console.print(summary_line(study, n_trials or spec.n_trials))
    if code:
        console.print(f"stopped; nothing is left running. Resume with: facesearch study run {spec_path}"
                      + (f" --storage {storage}" if storage else ""))
        raise typer.Exit(code)
    console.print(f"done in {time.time() - start:.0f}s; best: facesearch best {spec.name}"
                  + (f" --storage {storage}" if storage else ""))


@app.command(epilog=env_epilog(*STUDY))
def worker(
    spec_path: Optional[Path] = typer.Argument(None, metavar="STUDY", help="Study spec file (the same on every "
                                               "machine), or a built-in study's name."),
    storage: Storage = None,
    worker_id: int = typer.Option(0, help="Distinct per worker: offsets the sampler seed."),
    n_trials: Optional[int] = typer.Option(None, help="Stop when the study holds this many trials."),
    timeout: Timeout = None,
    device: Device = "auto",
    log_format: LogFormat = "text",
    plan: Optional[str] = typer.Option(None, help="Follow this plan's active phase instead of one study "
                                                  "(plan file or shipped plan's name); stops when it ends, "
                                                  "after --timeout waiting for a phase, or when the plan has "
                                                  "not started in an hour."),
    mlflow: Mlflow = None,
    wandb: Wandb = None,
    tensorboard: Tensorboard = None,
) -> None:
    """Join a study as one worker (run one per GPU on any machine that reaches the storage), or follow a plan.
    It writes dated lines: start, each epoch, each finished trial, exit and a summary of the study."""
    import dataclasses

    from ..logline import log_line
    from ..run.tether import reporting_exit, tie_to_supervisor
    from ..view.trial_log import WorkerLines
    from ..run.worker import run_worker

    use_log_format(log_format)
    if plan is not None or spec_path is None:
        from ..plan.follow import follow_plan
        from .plan import _load

        if plan is None:
            from facenet.errors import ConfigError

            raise ConfigError("worker: give a STUDY (spec file or built-in name), or --plan PLAN to follow a plan")
        joined = follow_plan(_load(plan), storage, worker_id, device, log=log_line, wait_limit=seconds(timeout))
        echo(f"worker {worker_id}: followed {len(joined)} phase(s): {', '.join(joined) or 'none'}")
        return
    limit = seconds(timeout)
    supervised = tie_to_supervisor()   # from study run: stops when it is gone; by hand: tied to nothing
    with reporting_exit():   # study run reads the error this worker stops on from there, not from its log
        spec = checked_spec(spec_path, storage, device, warn=not supervised)   # study run has warned already
        spec = dataclasses.replace(spec, tracking=tracking_targets(spec.tracking, mlflow, wandb, tensorboard))
        run_worker(spec, storage, worker_id, n_trials, limit, device, log=log_line, lines=WorkerLines())


@app.command()
def studies(storage: Storage = None, fmt: Format = "table", as_json: Json = False,
            builtin: bool = typer.Option(False, "--builtin", help="List the studies shipped with facesearch.")) -> None:
    """List the studies in a storage with their trial counts and best EER (or the built-in ones)."""
    from ..storage import open_storage
    from ..view.catalog import builtin_json, builtin_table
    from ..view.output import emit, output_format
    from ..view.status import studies_json, studies_table

    fmt = output_format(fmt, as_json)
    if builtin:
        emit(fmt, builtin_json(), builtin_table)
        return
    store = open_storage(storage, create=False)
    records = studies_json(store)
    emit(fmt, records, lambda: studies_table(store),
         rows=[{k: v for k, v in r.items() if k != "counts"} | r["counts"] for r in records])


@study_app.command("status")
def study_status(
    name: str = typer.Argument(..., help="Study name."),
    storage: Storage = None,
    last: Optional[int] = typer.Option(None, help="Show only the last N trials."),
    fmt: Format = "table",
    as_json: Json = False,
) -> None:
    """A table of the study's trials (state, EER, params, parameter count, time and its estimate, prune
    reason), the time left, GPU-hours spent and left under a budget, successive-halving rungs, and the Slurm
    jobs running trials."""
    from rich.console import Group
    from rich.text import Text

    from ..record import stored_spec
    from ..run.slurm import jobs_line, running_jobs
    from ..storage import load_study, open_storage
    from ..view.output import emit, output_format
    from ..view.rungs import rung_rows, rungs_table
    from ..view.status import status_json, summary_line, trials_table

    fmt = output_format(fmt, as_json)
    study = load_study(name, open_storage(storage, create=False), storage)
    spec = stored_spec(study)
    n_trials = spec.get("n_trials")
    trials = study.get_trials(deepcopy=False)
    record = {**status_json(study, n_trials, last), "slurm_jobs": {str(n): j for n, j in running_jobs(trials).items()}}

    def table():
        parts = [trials_table(study, limit=last), Text.from_markup(summary_line(study, n_trials, spec.get("hours")))]
        if rows := rung_rows(study, spec.get("pruner") or {}, spec.get("epochs")):
            parts.append(rungs_table(rows, f"rungs of the {spec['pruner']['name']} pruner (epochs)"))
        if line := jobs_line(trials):
            parts.append(Text(line))
        return Group(*parts)

    emit(fmt, record, table, rows=record["trials"])


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
         fmt: Format = "table", as_json: Json = False) -> None:
    """The top trials with 95% intervals; marks those the val list cannot tell from the best."""
    from ..storage import load_study, open_storage
    from ..view.best import best_json, best_view
    from ..view.output import emit, output_format

    fmt = output_format(fmt, as_json)
    study = load_study(name, open_storage(storage, create=False), storage)
    record = best_json(study, top)
    emit(fmt, record, lambda: best_view(study, top), rows=record["top"])
