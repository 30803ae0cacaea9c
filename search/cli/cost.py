"""``facesearch calibrate``: what trials cost here (``plan price`` lives with the other plan commands)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import TRAINING, Device, Format, Json, Storage, app, env_epilog


@app.command(epilog=env_epilog("FACESEARCH_DATA", *TRAINING))
def calibrate(
    spec_paths: List[Path] = typer.Argument(..., metavar="STUDY.yaml...",
                                            help="Studies whose points to measure."),
    device: Device = "auto",
    out: Optional[Path] = typer.Option(None, help="Also write the table (and data sizes) to this JSON file."),
    storage: Storage = None,
    data: Optional[Path] = typer.Option(None, help="Probe on this data set (course layout), not the specs'."),
    keys: str = typer.Option("all", help="all: every network x resolution x batch; shapes: one batch per "
                                         "network and resolution (the planner uses the nearest)."),
    steps: int = typer.Option(5, help="Timed training steps per point."),
    warmup: int = typer.Option(2, help="Untimed steps first."),
    eval_images: int = typer.Option(512, help="Val images embedded to time evaluation."),
    min_seconds: float = typer.Option(1.0, help="Time at least this long per point (more steps if fast)."),
    fmt: Format = "table",
    as_json: Json = False,
) -> None:
    """Measure training and evaluation speed of every point the studies can draw; workers reuse it.
    Progress goes to stderr; stdout gets the calibrated points (--format)."""
    from ..cost.calibrate import KEY_SETS, calibrate as measure
    from ..cost.calibration import CalibrationError
    from ..storage import open_storage
    from ..view.output import emit, output_format

    fmt = output_format(fmt, as_json)
    if keys not in KEY_SETS:
        raise CalibrationError(f"--keys {keys!r}: use one of {', '.join(KEY_SETS)}")
    table = measure(spec_paths, open_storage(storage), device, out, data, keys, steps, warmup, eval_images,
                    lambda m: typer.echo(m, err=True), min_seconds)
    points = [e.to_dict() for e in table.entries.values()]
    emit(fmt, points, rows=[{"device": p["device"], **p["key"], **p["speed"]} for p in points])
    typer.echo(f"calibrated {len(table.entries)} point(s) on {', '.join(table.devices()) or 'nothing'}", err=True)
