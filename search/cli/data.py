"""``facesearch data``: data sets."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from .common import data_app, echo


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(Path("data/synth"), help="Folder to write train1/, train2/, val/, test/ into."),
    identities: int = typer.Option(200, help="Identities in all splits together."),
    images_per_identity: int = typer.Option(20, help="Images of each identity."),
    size: int = typer.Option(64, help="Image side in pixels."),
    seed: int = typer.Option(0, help="Same seed, same bytes."),
) -> None:
    """Write synthetic faces in the course layout (identity folders and pair lists)."""
    from facenet.synth import synthesize

    summary = synthesize(out, identities=identities, images_per_identity=images_per_identity, size=size, seed=seed,
                         progress=sys.stderr.isatty())
    echo(f"wrote {out}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
