"""``facesearch data``: data sets."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .common import Format, Json, data_app, echo, env_epilog


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(Path("data/synth"), help="Folder to write train1/, train2/, val/, test/ into."),
    identities: int = typer.Option(200, help="Identities in all splits together."),
    images_per_identity: int = typer.Option(20, help="Images of each identity."),
    size: int = typer.Option(64, help="Image side in pixels."),
    seed: int = typer.Option(0, help="Same seed, same bytes."),
    old_out: Optional[Path] = typer.Argument(None, metavar="DIR", hidden=True,
                                             help="The old form of --out (data synth DIR)."),
) -> None:
    """Write synthetic faces in the course layout (identity folders and pair lists)."""
    from facenet.data.synth import synthesize

    if old_out is not None:   # scripts written before --out
        typer.echo(f"note: 'data synth DIR' is now 'data synth --out {old_out}'", err=True)
        out = old_out

    summary = synthesize(out, identities=identities, images_per_identity=images_per_identity, size=size, seed=seed,
                         progress=sys.stderr.isatty())
    echo(f"wrote {out}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))


@data_app.command("check", epilog=env_epilog("FACESEARCH_CACHE", "FACESEARCH_CACHE_BUDGET"))
def data_check(
    root: Path = typer.Argument(..., help="A data set (train1/, val/ ...), a training or pair-list folder."),
    resolution: list[int] = typer.Option([224], "--resolution", "-r", help="Crop size (repeatable)."),
    keep_checkpoints: int = typer.Option(3, help="Trials whose checkpoints a study keeps."),
    model: str = typer.Option("resnet18", help="Model whose checkpoint size is counted."),
    cache_dir: str = typer.Option("", help="Cache folder (default: $FACESEARCH_CACHE, ~/.cache/facesearch)."),
    fmt: Format = "table",
    as_json: Json = False,
) -> None:
    """Identities, images, unreadable files, pair lists; projected cache, checkpoint and free disk sizes.
    Exit status 2 when the data cannot be trained on (after the report)."""
    from facenet.config import TrainConfig
    from facenet.data.datacheck import check_data

    from ..view.output import emit, output_format
    from ..view.status import data_check_table

    fmt = output_format(fmt, as_json)
    report = check_data(root, resolution, cache_dir, keep_checkpoints=keep_checkpoints,
                        config=TrainConfig(model=model))
    rows = [{"set": where, "check": check, "value": value} for where, check, value in report.rows]
    emit(fmt, {"root": str(root), "rows": rows, "problems": report.problems, "unusable": report.unusable or None},
         lambda: data_check_table(report.rows, root), rows=rows)
    report.raise_if_unusable()
