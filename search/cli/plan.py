"""``facesearch plan price|run|status``: a plan of phases priced, run under one budget, and followed."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .common import Device, Format, Json, Storage, app, echo, env_epilog

plan_app = typer.Typer(help="Plans: phases (studies chained by from:) priced, fitted and run under one budget.",
                       no_args_is_help=True)
app.add_typer(plan_app, name="plan")
SUBCOMMANDS = ("price", "run", "status", "submit")   # submit: cli/cluster.py

Calibration = typer.Option(None, help="A calibration file (default: the storage's).")
DataSize = typer.Option([], help="Size of a data set that is not here: train1=2882x174 (identities x images "
                                 "each) or val=50000 (images).")


def _sizes(table, data_size: list[str]):
    from ..cost.datasize import DataSizes

    sizes = DataSizes(table.census)
    for text in data_size:
        sizes.add_override(text)
    return sizes


def gpu_list(gpus: Optional[str]) -> list[int] | None:
    from facenet.errors import ConfigError

    if not gpus:
        return None
    try:
        return [int(g) for g in gpus.split(",")]
    except ValueError:
        raise ConfigError(f"--gpus {gpus}: expected GPU indices such as 0,1,2,3 (or --n-gpus N for a count)") \
            from None


@plan_app.command("price", epilog=env_epilog("FACESEARCH_DATA"))
def price(
    spec_paths: List[Path] = typer.Argument(..., metavar="STUDY.yaml...", help="The phases (chained by from:)."),
    hours: float = typer.Option(..., help="GPU-hours for all phases together."),
    gpus: Optional[str] = typer.Option(None, help="GPU indices running trials at once, e.g. 0,1,2,3 "
                                                  "(for the wall-clock column)."),
    n_gpus: int = typer.Option(1, "--n-gpus", help="Or their count."),
    calibration: Optional[Path] = Calibration,
    storage: Storage = None,
    device: Optional[str] = typer.Option(None, help="Calibrated device to plan for (if several)."),
    data_size: List[str] = DataSize,
    fit: bool = typer.Option(False, help="Scale trials (then epochs) to fit, and print what changed."),
    fmt: Format = "table",
    as_json: Json = False,
) -> None:
    """Price every phase before it runs: trials, epochs, resolution, GPU-hours, wall-clock hours on N GPUs."""
    from ..cost.calibration import CalibrationTable, stored_table
    from ..cost.plan import run_plan
    from ..storage import open_storage
    from ..view.output import emit, output_format

    table = CalibrationTable.load(calibration) if calibration else stored_table(open_storage(storage))
    if gpus and "," not in gpus and gpus.isdigit() and int(gpus) > 1:   # scripts from when --gpus was a count
        typer.echo(f"note: 'plan price --gpus {gpus}' (a count) is now '--n-gpus {gpus}'; --gpus takes indices",
                   err=True)
        gpus, n_gpus = None, int(gpus)
    count = len(gpu_list(gpus)) if gpus else n_gpus
    run_plan(spec_paths, hours, max(1, count), table, device, _sizes(table, data_size), fit, echo,
             output_format(fmt, as_json), emit=emit)


def _load(plan: str):
    from ..builtin import resolve_plan
    from ..plan.schema import load_plan

    return load_plan(resolve_plan(plan))


@plan_app.command("run")
def run(
    plan: str = typer.Argument(..., metavar="PLAN", help="Plan file, or a shipped plan's name (course, quickstart)."),
    hours: Optional[float] = typer.Option(None, help="GPU-hours for the whole plan (default: the plan's hours:)."),
    gpus: Optional[str] = typer.Option(None, help="GPU indices, e.g. 0,1,2,3: one worker per GPU (overrides "
                                                  "--workers)."),
    workers: int = typer.Option(1, min=1, help="Worker processes on this machine."),
    storage: Storage = None,
    device: Device = "auto",
    dry_run: bool = typer.Option(False, "--dry-run", help="Preflight and print the fitted plan; run nothing, "
                                                          "store nothing."),
    calibration: Optional[Path] = Calibration,
    data_size: List[str] = DataSize,
) -> None:
    """Run a plan: preflight every phase, calibrate if needed, fit, run the phases in order under their shares,
    re-plan after each, then retrain the winner, export, score the test list and write the report."""
    from facenet.errors import ConfigError

    from ..plan.runner import Run, run_plan
    from ..view.watch import console as make_console

    spec = _load(plan)
    hours = hours if hours is not None else spec.hours
    if hours is None or hours <= 0:
        raise ConfigError(f"{spec.source}: the plan has no hours:; give --hours H")
    console = make_console()
    gpu_ids = gpu_list(gpus)
    r = Run(spec, storage, hours, len(gpu_ids) if gpu_ids else workers, gpu_ids, device, echo,
            lambda t: console.print(t), live=sys.stdout.isatty())
    sizes = None
    if calibration is not None or data_size:
        from ..cost.calibration import CalibrationTable

        sizes = _sizes(CalibrationTable.load(calibration) if calibration else CalibrationTable(), data_size)
    from ..plan.status import finish_lines

    done = run_plan(r, dry_run, calibration, sizes, console)
    if dry_run:
        echo("dry run: nothing was run or stored")
        return
    for line in finish_lines(done["finish"]):
        echo(line)
    echo(f"plan {spec.name} done; see it with: facesearch plan status {plan}"
         + (f" --storage {storage}" if storage else ""))


@plan_app.command("status")
def status(
    plan: str = typer.Argument(..., metavar="PLAN", help="Plan file, or a shipped plan's name."),
    storage: Storage = None,
    fmt: Format = "table",
    as_json: Json = False,
) -> None:
    """The plan's phases: status, trials, share and spend, best val EER, and where the finished pieces are."""
    from ..builtin import resolve_plan
    from ..plan.schema import plan_name
    from ..plan.state import PlanState
    from ..plan.status import finish_lines, status_json, status_table
    from ..storage import StorageError, is_database, open_storage, redact, storage_url
    from ..view.output import emit, output_format

    name = plan_name(resolve_plan(plan))
    url = storage_url(storage)
    if not is_database(url) and not Path(url.removeprefix("journal:")).exists():
        raise StorageError(f"no storage at {url}; run the plan first (facesearch plan run {plan}) or give --storage")
    state = PlanState(open_storage(storage), name).load()
    if state is None:
        raise StorageError(f"plan {name!r} has not run in {redact(url)}; start it with: "
                           f"facesearch plan run {plan}")
    fmt = output_format(fmt, as_json)
    record = status_json(state)
    emit(fmt, record, lambda: status_table(state), rows=record["phases"])
    if fmt == "table":
        for line in finish_lines(state["plan"].get("finish") or {}):
            echo(line)


def legacy_plan_args(argv: list[str]) -> list[str]:
    """``facesearch plan FILES...`` (the old form) is ``plan price FILES...``, with a one-line notice."""
    if len(argv) > 2 and argv[1] == "plan" and argv[2] not in SUBCOMMANDS and argv[2] not in ("--help", "-h"):
        typer.echo("notice: `facesearch plan FILES...` is now `facesearch plan price FILES...`", err=True)
        return [argv[0], "plan", "price", *argv[2:]]
    return argv
