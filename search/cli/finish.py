"""``facesearch retrain``, ``export`` and ``quickstart``: from the best trial to a submission."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from facenet.config import PARAM_CAP

from .common import (TRAINING, Device, Format, Json, Mlflow, Storage, Tensorboard, Wandb, app, echo, env_epilog,
                     tracking_targets)


@app.command(epilog=env_epilog("FACESEARCH_RUNS", *TRAINING))
def retrain(
    name: str = typer.Argument(..., help="Study name."),
    storage: Storage = None,
    epochs: Optional[int] = typer.Option(None, help="Epochs (default: the trial's)."),
    resolution: Optional[int] = typer.Option(None, help="Input resolution (default: the trial's)."),
    finetune_on: Optional[str] = typer.Option(None, help="Then fine-tune on this set (folder, or e.g. train2)."),
    finetune_epochs: Optional[int] = typer.Option(None, help="Fine-tuning epochs (default: --epochs)."),
    device: Device = "auto",
    top: Optional[int] = typer.Option(None, min=1, help="Retrain each of the top K trials."),
    within_noise: bool = typer.Option(False, "--within-noise", help="Retrain the best and every top trial "
                                      "within noise of it (see `best`)."),
    reuse: bool = typer.Option(False, "--reuse", help="Where the retrain would repeat the trial's run (its epochs, "
                               "resolution and seed), start from the trial's checkpoints instead of training it "
                               "again (e.g. before --finetune-on)."),
    mlflow: Mlflow = None,
    wandb: Wandb = None,
    tensorboard: Tensorboard = None,
    fmt: Format = "table",
    as_json: Json = False,
) -> None:
    """Retrain the best trial at full budget (optionally pre-train then fine-tune); the study records the run.
    The retrained model, its scores and figures go to the study's tracking backends as artifacts. With
    --format json or csv, progress goes to stderr and stdout gets the summary alone."""
    from ..finish.retrain import retrain as do_retrain, retrain_top
    from ..record import stored_spec
    from ..storage import artifact_dir, load_study, open_storage, runs_root
    from ..track import open_tracking
    from ..view.output import emit, output_format

    fmt = output_format(fmt, as_json)
    study = load_study(name, open_storage(storage), storage)
    targets = tracking_targets(stored_spec(study).get("tracking") or {}, mlflow, wandb, tensorboard)
    say = echo if fmt == "table" else (lambda m: typer.echo(m, err=True))
    options = {"epochs": epochs, "resolution": resolution, "finetune_on": finetune_on,
               "finetune_epochs": finetune_epochs, "device": device, "progress": sys.stderr.isatty(),
               "artifacts": artifact_dir(storage), "log": say, "reuse": reuse}
    with open_tracking(targets, runs_root(storage), lambda m: typer.echo(m, err=True)) as tracking:
        if top or within_noise:
            records = retrain_top(study, runs_root(storage), top, within_noise, tracking=tracking, **options)
        else:
            records = [do_retrain(study, runs_root(storage), tracking=tracking, **options)]
    if fmt == "table":   # sentences, not a table: a line per retrained trial
        for line in retrain_lines(records, bool(top or within_noise)):
            echo(line)
    else:
        emit(fmt, [r.to_dict(roc=False) for r in records], echo=echo)


def retrain_lines(records: list, several: bool) -> list[str]:
    """What retrain prints for a person: each retrained trial (``RetrainRecord``) against the search (and the
    best retrained)."""
    from ..view.noise import retrain_text

    lines = []
    for r in records:
        gap = r.vs_best_retrained
        if not several:
            verdict = f"; model {r.best_pt}"
        elif gap is None:
            verdict = "; best retrained"
        else:
            verdict = (f"; vs best retrained {gap['difference']:+.2f} [{gap['low']:+.1f}, {gap['high']:+.1f}] "
                       + ("points, within noise" if gap["within_noise"] else "points, worse"))
        lines.append(f"retrained trial {r.trial}: val EER {retrain_text(r)} (search: {r.search_val_eer:.2f}%)"
                     f"{verdict}")
    return lines + [f"next: facesearch export {records[0].run_dir} --out bundle/"]


@app.command()
def export(
    run: Path = typer.Argument(..., help="A run folder (or its best.pt)."),
    out: Path = typer.Option(..., help="Bundle folder to write."),
    cap: str = typer.Option(str(PARAM_CAP), help="Parameter cap for the model card, e.g. 11.5M."),
) -> None:
    """Write a self-contained bundle: TorchScript, ONNX (checked under onnxruntime), config.json, model card."""
    from facenet.export import export_bundle

    from ..spec import parse_count

    from ..record import RETRAIN_FILE, RetrainRecord

    retrain_info = Path(run if Path(run).is_dir() else Path(run).parent) / RETRAIN_FILE
    provenance = {}
    if retrain_info.exists():
        info = RetrainRecord.from_dict(json.loads(retrain_info.read_text()))
        provenance = {"study": info.study, "trial": info.trial}
    card = export_bundle(run, out, parse_count(cap), provenance)
    echo(f"wrote {out}: model.ts, model.onnx, config.json, MODEL_CARD.md "
         f"({card['parameters']:,} parameters, val EER {card['val_eer']:.2f}%, "
         f"ONNX max diff {card['onnx_max_abs_diff']:.1e})")


@app.command()
def quickstart(
    out: Path = typer.Option(Path("quickstart"), help="Folder for data, studies, runs, bundle, scores, report."),
    workers: int = typer.Option(2, help="Worker processes."),
) -> None:
    """The main job on synthetic faces as a plan: synthesise, two search phases under one budget, then retrain,
    export, score and report (minutes on 2 CPUs)."""
    from ..logline import log_line
    from ..plan.quickstart import run_quickstart

    live = sys.stdout.isatty()   # without a terminal: a line per trial and per worker event, with the time
    r = run_quickstart(out, workers, log=print if live else log_line, live=live)
    t, s = r["timings"], r["status"]
    echo("")
    echo(f"quickstart done in {t['total']:.0f}s (data {t['data']:.0f}s, plan {t['plan']:.0f}s: "
         f"{s['spent_hours'] * 3600:.0f} of {s['hours'] * 3600:.0f} CPU-seconds budgeted)")
    for p in s["phases"]:
        best = "" if p["best_value"] is None else f", best val EER {p['best_value']:.2f}% (trial {p['best_number']})"
        echo(f"  phase {p['name']:16s} {p['trials_run']} trial(s){best}")
    f = s["finish"]
    if "test_eer" in f:
        echo(f"  winner: {f['study']} trial {f['trial']}: retrained val EER {f['val_eer']:.2f}%, "
             f"test EER {f['test_eer']:.2f}%")
    for key, label in (("run", "retrained run"), ("bundle", "export bundle"), ("scores", "test scores"),
                       ("report", "plan report")):
        if key in f:
            echo(f"  {label:16s} {f[key]}")
    echo(f"  synthetic faces  {r['data']}")
    echo(f"  study storage    {r['storage']}")
    echo(f"  dashboard        facesearch dashboard --storage {r['storage']}")
    echo(f"  the plan         facesearch plan status {r['plan']} --storage {r['storage']}")
