"""From the best trial to a submission: retrain at full budget, optionally fine-tune, record it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import optuna

from facenet import TrainConfig, fit
from facenet.data import PairList
from facenet.errors import DataError
from facenet.evaluate import write_scores
from facenet.preflight import check_data, check_run

from ..record import RETRAIN, TrialRecord, best_trial
from ..view.report import det_figure, roc_figure
from ..storage import StorageError


def best_config(study: optuna.Study) -> tuple[optuna.trial.FrozenTrial, TrainConfig]:
    t = best_trial(study)
    if t is None:
        raise StorageError(f"study {study.study_name!r} has no complete trial to retrain; run more trials first")
    return t, TrainConfig.from_dict(TrialRecord.of(t).config)


def resolve_set(name: str, train_path: str) -> str:
    """``train2`` means the sibling folder of the trial's training set; a path is taken as is."""
    candidate = Path(name)
    if candidate.is_dir():
        return str(candidate)
    sibling = Path(train_path).parent / name
    if sibling.is_dir():
        return str(sibling)
    raise DataError(f"--finetune-on {name}: neither a folder nor a sibling of {train_path}")


def retrain(study: optuna.Study, runs_root: Path, epochs: int | None = None, resolution: int | None = None,
            finetune_on: str | None = None, finetune_epochs: int | None = None, device: str = "auto",
            log: Callable[[str], None] = print, progress: bool = False, artifacts: Path | None = None) -> dict:
    """Train the best trial's config again (full budget), then fine-tune if asked; record it on the study
    and, given an artifact folder, attach its card, val scores and ROC/DET to the study there."""
    trial, config = best_config(study)
    base = runs_root / study.study_name / f"retrain-{trial.number:04d}"
    changes = {"run_dir": str(base / "pretrain" if finetune_on else base), "device": device, "resume": True}
    if epochs:
        changes["epochs"] = epochs
    if resolution:
        changes["resolution"] = resolution
    config = config.replace(**changes)
    check_run(config)   # data, device, folders: before anything is trained or written
    finetune_set = resolve_set(finetune_on, config.train_path) if finetune_on else None
    if finetune_set:
        check_data(config.replace(train_path=finetune_set))
    log(f"retraining trial {trial.number} (val EER {trial.value:.2f}% in the search) for {config.epochs} epochs "
        f"at {config.resolution}px into {config.run_dir}")
    result = fit(config, log=log, progress=progress)
    if finetune_on:
        config = config.replace(train_path=finetune_set,
                                initial_model=str(Path(result.run_dir) / "best.pt"), run_dir=str(base / "finetune"),
                                epochs=finetune_epochs or config.epochs)
        log(f"fine-tuning on {config.train_path} for {config.epochs} epochs")
        result = fit(config, log=log, progress=progress)

    from facenet.scoring import score_pairs

    pairs = PairList.read(config.val_path, config.val_list)
    scores = score_pairs(Path(result.run_dir) / "best.pt", pairs, device, config.eval_batch, config.cache_dir)
    record = {
        "study": study.study_name, "trial": trial.number, "search_val_eer": trial.value, "run_dir": result.run_dir,
        "best_pt": str(Path(result.run_dir) / "best.pt"), "val_eer": result.best_val_eer,
        "best_epoch": result.best_epoch, "epochs": config.epochs, "resolution": config.resolution,
        "finetuned_on": config.train_path if finetune_on else None, "params": result.params,
        "roc": {"labels": pairs.labels.tolist(), "scores": [round(float(s), 6) for s in scores]},
    }
    study.set_user_attr(RETRAIN, record)
    run = Path(result.run_dir)
    (run / "retrain.json").write_text(json.dumps({k: v for k, v in record.items() if k != "roc"}, indent=2))
    write_scores(run / "val_scores.txt", scores, pairs)
    title = f"trial {trial.number} retrained: val EER {result.best_val_eer:.2f}%"
    figures = [roc_figure(pairs.labels, scores, title), det_figure(pairs.labels, scores, title)]
    (run / "roc_det.html").write_text(   # plotly.js inline once: the page works offline, from the dashboard too
        "<html><body>" + "".join(f.to_html(full_html=False, include_plotlyjs=i == 0) for i, f in enumerate(figures))
        + "</body></html>")
    if artifacts is not None:
        attach(study, artifacts, [run / n for n in ("retrain.json", "val_scores.txt", "roc_det.html")])
    return record


def attach(study: optuna.Study, folder: Path, files: list[Path]) -> None:
    """Upload files as Optuna artifacts of the study (a finished trial takes none), so optuna-dashboard
    lists them on the study's page."""
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    folder.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(folder))
    for f in files:
        upload_artifact(artifact_store=store, file_path=str(f), study_or_trial=study)
