"""The ``facesearch`` command line.

User errors (bad paths, bad YAML, unknown names, unreachable storage) end in one line
on stderr and exit status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Tune face-embedding training with Optuna studies.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Data sets: synthesise faces.", no_args_is_help=True)
app.add_typer(data_app, name="data")
DEBUG = False


def echo(msg: str) -> None:
    typer.echo(msg)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    global DEBUG
    DEBUG = DEBUG or debug


# ------------------------------------------------------------------ data
@data_app.command("synth")
def data_synth(
    out: Path = typer.Argument(..., help="Folder to write train1/, train2/, val/, test/ into."),
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


# ------------------------------------------------------------------ train / score
@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML of TrainConfig fields."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a field: key=value (repeatable)."),
    initial_model: Optional[Path] = typer.Option(None, help="Start from these weights (mismatched keys skipped)."),
) -> None:
    """Train one model (ResNet18 + softmax + Adam + StepLR unless told otherwise)."""
    from facenet import TrainConfig, fit

    cfg = TrainConfig.from_file(config, set_) if config else TrainConfig().override(set_)
    if initial_model:
        cfg = cfg.replace(initial_model=str(initial_model))
    result = fit(cfg, progress=sys.stderr.isatty())
    echo(f"best val EER {result.best_val_eer:.2f}% at epoch {result.best_epoch}; "
         f"{result.params:,} parameters; {result.seconds:.0f}s on {result.device}; run folder {result.run_dir}")


@app.command()
def score(
    model: Path = typer.Argument(..., help="A checkpoint (best.pt), a run folder, or an export bundle."),
    pairs: Path = typer.Option(..., help="Pair list: label,path1,path2 per line."),
    root: Optional[Path] = typer.Option(None, help="Folder the pair paths are relative to (default: the list's)."),
    out: Path = typer.Option(..., help="Score file to write (score,label,path1,path2)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    batch: int = typer.Option(256, help="Images per forward pass."),
) -> None:
    """Score a pair list with a trained model: the submission file, and the EER when labels are real."""
    from facenet.data import PairList
    from facenet.evaluate import Verifier, eer, write_scores
    from facenet.export import load_embedder
    from facenet.train import resolve_device

    dev = resolve_device(device)
    net, resolution = load_embedder(model, dev)
    pair_list = PairList.read(root or pairs.parent, pairs)
    scores = Verifier(pair_list, resolution).scores(net, dev, batch)
    write_scores(out, scores, pair_list)
    msg = f"wrote {len(scores)} scores to {out}"
    if len(set(pair_list.labels.tolist())) == 2:
        msg += f"; EER {eer(pair_list.labels, scores):.2f}%"
    echo(msg)


@app.command()
def params(
    n_out: str = typer.Option("512", help="Embedding sizes, comma-separated."),
    cap: str = typer.Option("11.5M", help="Parameter cap, e.g. 11.5M or 11500000."),
) -> None:
    """Parameter count of every registered architecture against the cap (meta device, no memory)."""
    from rich.console import Console
    from rich.table import Table

    from facenet.models import param_table
    from search.spec import parse_count

    limit = parse_count(cap)
    rows = param_table(tuple(int(n) for n in n_out.split(",")), limit)
    table = Table(title=f"parameters by the cap rule (cap {limit:,})")
    keys = [k for k in rows[0] if k not in ("params", "fits")]
    for k in keys:
        table.add_column(k)
    table.add_column("params", justify="right")
    table.add_column("fits")
    for r in rows:
        table.add_row(*[str(r[k]) if r[k] is not None else "" for k in keys], f"{r['params']:,}",
                      "[green]yes[/]" if r["fits"] else "[red]no[/]")
    Console(width=120).print(table)


def main() -> None:
    global DEBUG
    if "--debug" in sys.argv[1:]:
        DEBUG = True
        sys.argv.remove("--debug")
    try:
        app()
    except Exception as e:
        from facenet.errors import UserError

        if DEBUG or not isinstance(e, UserError):
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
