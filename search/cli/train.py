"""``facesearch train``, ``score`` and ``params``: one run, one score file, the cap table."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .common import TRAINING, Device, Format, Json, Mlflow, Tensorboard, Wandb, app, echo, tracking_targets
from .help import config_fields_epilog, env_epilog


@app.command(epilog=config_fields_epilog() + "\n\n" + env_epilog(*TRAINING))
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML of TrainConfig fields."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a field: key=value (repeatable)."),
    initial_model: Optional[Path] = typer.Option(None, help="Start from these weights (mismatched keys skipped)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in run_dir even under another "
                                "config (without run_dir: the newest run in runs/train)."),
    mlflow: Mlflow = None,
    wandb: Wandb = None,
    tensorboard: Tensorboard = None,
) -> None:
    """Train one model (ResNet18 + softmax + Adam + StepLR unless told otherwise); each run in a new folder
    under runs/train unless run_dir names one."""
    from facenet import TrainConfig, fit
    from facenet.preflight import prepare_run

    cfg = TrainConfig.from_file(config, set_) if config else TrainConfig().override(set_)
    if initial_model:
        cfg = cfg.replace(initial_model=str(initial_model))
    targets = tracking_targets({}, mlflow, wandb, tensorboard)   # a target that cannot work: said before training
    cfg = prepare_run(cfg, _names_run_dir(config, set_), resume)
    if targets:
        from ..run.tracked import tracked_fit
        from ..track import RunInfo, open_tracking

        tracking = open_tracking(targets, Path(cfg.run_dir).parent, lambda m: typer.echo(m, err=True))
        run = RunInfo(name=Path(cfg.run_dir).name, run_dir=Path(cfg.run_dir), kind="train", config=cfg.to_dict())
        try:
            result = tracked_fit(cfg, tracking, run, lambda r: [Path(r.run_dir) / "config.json"],
                                 progress=sys.stderr.isatty())
        finally:
            tracking.close()
    else:
        result = fit(cfg, progress=sys.stderr.isatty())
    echo(f"best val EER {result.best_val_eer:.2f}% at epoch {result.best_epoch}; "
         f"{result.params:,} parameters; {result.seconds:.0f}s on {result.device}; run folder {result.run_dir}")


def _names_run_dir(config: Optional[Path], set_: list[str]) -> bool:
    """Whether the config file or a --set names run_dir (otherwise each run gets a new folder)."""
    import yaml

    if any(s.partition("=")[0].strip() == "run_dir" for s in set_):
        return True
    return bool(config) and "run_dir" in (yaml.safe_load(config.read_text()) or {})


@app.command()
def score(
    model: Path = typer.Argument(..., help="A checkpoint (best.pt), a run folder, or an export bundle."),
    pairs: Path = typer.Option(..., help="Pair list: label,path1,path2 per line (relative to the working folder)."),
    root: Optional[Path] = typer.Option(None, help="Folder the pair paths are relative to (default: the list's)."),
    out: Path = typer.Option(..., help="Score file to write (score,label,path1,path2)."),
    device: Device = "auto",
    batch: int = typer.Option(256, help="Images per forward pass."),
) -> None:
    """Score a pair list with a trained model: the submission file, and the EER when labels are real."""
    from facenet.data.folders import PairList
    from facenet.eval.evaluate import eer, write_scores
    from facenet.eval.scoring import score_pairs
    from facenet.preflight import check_scoring

    pairs = pairs.absolute()   # relative to the working folder, as every path option (not to --root)
    pair_list = PairList.read(root or pairs.parent, pairs)
    repeated, example = pair_list.duplicates()
    if repeated:
        typer.echo(f"warning: {pairs}: {repeated} pair(s) repeat an earlier pair (first: {example[0]},{example[1]}); "
                   f"scored as given", err=True)
    check_scoring(pair_list.root, out, device)
    scores = score_pairs(model, pair_list, device, batch)
    write_scores(out, scores, pair_list)
    msg = f"wrote {len(scores)} scores to {out}"
    if len(set(pair_list.labels.tolist())) == 2:
        msg += f"; EER {eer(pair_list.labels, scores):.2f}%"
    echo(msg)


@app.command()
def params(
    n_out: str = typer.Option("512", help="Embedding sizes, comma-separated."),
    cap: str = typer.Option("11.5M", help="Parameter cap, e.g. 11.5M or 11500000."),
    fmt: Format = "table",
    as_json: Json = False,
) -> None:
    """Parameter count of every registered architecture against the cap (meta device, no memory)."""
    from facenet.models import param_table

    from ..spec import parse_count
    from ..view.output import emit, output_format
    from ..view.status import params_table

    fmt = output_format(fmt, as_json)
    limit = parse_count(cap)
    rows = param_table(tuple(int(n) for n in n_out.split(",")), limit)
    emit(fmt, rows, lambda: params_table(rows, limit))
