"""From the best trial to a submission: retrain at full budget, optionally fine-tune, record it.

``retrain_top`` retrains several of the top trials (or those within noise of the best) and compares
the retrained models on the val list, paired, as ``facesearch best`` compares trials.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import FrozenTrial

from facenet import TrainConfig, fit
from facenet.data.folders import PairList
from facenet.errors import DataError
from facenet.eval.evaluate import write_scores
from facenet.eval.compare import EerComparison
from facenet.eval.stats import ScoredPairs
from facenet.preflight import check_data, check_run, config_changes, stored_config

from ..record import RETRAIN, RETRAIN_FILE, RETRAINS, RetrainRecord, TrialRecord, best_trial
from ..run.folders import known_folder
from ..storage import StorageError
from ..track import EpochMetrics, RunEnd, RunInfo, Tracking
from ..view.figures import roc_det_figs, save_png
from ..view.noise import rank_top, within_noise_of_best

TOP = 5    # --within-noise without --top: the within-noise set among this many top trials


def best_config(study: optuna.Study, number: int | None = None) -> tuple[FrozenTrial, TrainConfig]:
    """The best complete trial (or trial ``number``) and its config."""
    t = best_trial(study) if number is None else study.trials[number]
    if t is None:
        raise StorageError(f"study {study.study_name!r} has no complete trial to retrain; run more trials first")
    return t, TrainConfig.from_dict(TrialRecord.of(t).config)


def retrain_config(config: TrainConfig, epochs: int | None = None, resolution: int | None = None) -> TrainConfig:
    """What a retrain of a trial's ``config`` trains: the same run at ``epochs`` and ``resolution`` when given."""
    changes = {k: v for k, v in (("epochs", epochs), ("resolution", resolution)) if v}
    return config.replace(**changes) if changes else config


def repeats_trial(trial_config: TrainConfig, config: TrainConfig) -> bool:
    """Whether ``config`` would train the trial's run once more: every field that shapes training equal, the
    seed too (the planner prices the finishing steps by this rule, the retrain follows it)."""
    return not config_changes(config, trial_config.to_dict())


RUN_FILES = ("config.json", "last.pt", "best.pt", "best_val_scores.npz")   # what a finished run resumes from


def adopt_trial_run(trial_dir: Path, config: TrainConfig) -> bool:
    """Copy a trial's finished run into the retrain's folder when the retrain would only repeat it (same config,
    seed and epochs): the retrain then resumes at its last epoch and trains nothing. False (nothing copied) when
    the trial's folder lacks a finished run of that config, or the retrain's folder has a run already."""
    from facenet import checkpoint

    stored = stored_config(trial_dir)
    target = Path(config.run_dir)
    if stored is None or stored_config(target) is not None or not repeats_trial(TrainConfig.from_dict(stored), config):
        return False
    if checkpoint.load(trial_dir / "last.pt").get("epoch") != config.epochs:
        return False   # stopped early or cut short: train it
    target.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (trial_dir / name).is_file():
            shutil.copy2(trial_dir / name, target / name)
    return True


def resolve_set(name: str, train_path: str) -> str:
    """``train2`` means the sibling folder of the trial's training set; a path is taken as is."""
    candidate = Path(name)
    if candidate.is_dir():
        return str(candidate)
    sibling = Path(train_path).parent / name
    if sibling.is_dir():
        return str(sibling)
    raise DataError(f"--finetune-on {name}: neither a folder nor a sibling of {train_path}")


def retrain(study: optuna.Study, runs_root: Path, *, epochs: int | None = None, resolution: int | None = None,
            finetune_on: str | None = None, finetune_epochs: int | None = None, device: str = "auto",
            log: Callable[[str], None] = print, progress: bool = False, artifacts: Path | None = None,
            number: int | None = None, tracking: Tracking | None = None, reuse: bool = False) -> RetrainRecord:
    """Train the best trial's config (or trial ``number``'s) again (full budget), then fine-tune if asked;
    record it on the study and, given an artifact folder, attach its card, val scores and ROC/DET there.
    ``tracking``: the run, its epochs, its files (model, scores, figures) go to those backends too.
    ``reuse``: a retrain that would repeat the trial's run exactly (``repeats_trial``) starts from the trial's
    own finished checkpoints instead of training it again."""
    tracking = tracking or Tracking([])
    trial, config = best_config(study, number)
    name = f"retrain-{trial.number:04d}"
    run = RunInfo(name=name, run_dir=known_folder(runs_root, study) / name, study=study.study_name,
                  number=trial.number, kind="retrain", params=dict(trial.params), config=config.to_dict())
    started: list[bool] = []
    try:
        record = _retrain(study, trial, config, runs_root, epochs, resolution, finetune_on, finetune_epochs, device,
                          log, progress, artifacts, tracking, run, started, reuse)
    except BaseException as e:
        if started:   # not for a check that failed before training
            tracking.run_end(run, RunEnd("FAIL", reason=f"{type(e).__name__}: {e}"[:500]))
        raise
    folder = Path(record.run_dir)
    tracking.artifacts(run, [folder / n for n in ("best.pt", "config.json", "retrain.json", "val_scores.txt",
                                                  "roc_det.html", "roc.png", "det.png")])
    tracking.run_end(run, RunEnd("COMPLETE", record.val_eer, tuple(record.val_eer_ci), record.params,
                                 best_epoch=record.best_epoch))
    return record


def _retrain(study, trial, config, runs_root, epochs, resolution, finetune_on, finetune_epochs, device, log, progress,
             artifacts, tracking, tracked, started, reuse) -> RetrainRecord:
    done = [0]   # epochs before this fit (pre-training), so fine-tuning steps follow on

    def on_epoch(r) -> None:
        tracking.epoch(tracked, EpochMetrics(done[0] + r.epoch, r.loss, r.val_eer, r.lr, r.images_per_s))

    base = known_folder(runs_root, study) / f"retrain-{trial.number:04d}"   # this study's, not a namesake's
    trial_config = config
    config = retrain_config(config, epochs, resolution).replace(
        run_dir=str(base / "pretrain" if finetune_on else base), device=device, resume=True)
    check_run(config)   # data, device, folders: before anything is trained or written
    finetune_set = resolve_set(finetune_on, config.train_path) if finetune_on else None
    if finetune_set:
        check_data(config.replace(train_path=finetune_set))
    if reuse and adopt_trial_run(Path(trial_config.run_dir), config):
        log(f"trial {trial.number}'s run (val EER {trial.value:.2f}% in the search) is what a retrain would train "
            f"again ({config.epochs} epochs at {config.resolution}px, same seed): its checkpoints are used, "
            f"copied into {config.run_dir}")
    else:
        log(f"retraining trial {trial.number} (val EER {trial.value:.2f}% in the search) for {config.epochs} "
            f"epochs at {config.resolution}px into {config.run_dir}")
    tracking.run_start(tracked)
    started.append(True)
    result = fit(config, log=log, progress=progress, on_epoch=on_epoch)
    done[0] = config.epochs
    if finetune_on:
        config = config.replace(train_path=finetune_set,
                                initial_model=str(Path(result.run_dir) / "best.pt"), run_dir=str(base / "finetune"),
                                epochs=finetune_epochs or config.epochs)
        log(f"fine-tuning on {config.train_path} for {config.epochs} epochs")
        result = fit(config, log=log, progress=progress, on_epoch=on_epoch)

    from facenet.data.cache import CacheSpec
    from facenet.eval.scoring import score_pairs

    pairs = PairList.read(config.val_path, config.val_list)
    scores = score_pairs(Path(result.run_dir) / "best.pt", pairs, device=device, batch=config.eval_batch,
                         cache=CacheSpec.of(config))
    scored = ScoredPairs.of(pairs, scores)
    interval = scored.interval()
    run = Path(result.run_dir)
    scored.save(run / "val_scores.npz")     # for paired comparisons with other retrained runs
    record = RetrainRecord(
        study=study.study_name, trial=trial.number, search_val_eer=trial.value, run_dir=result.run_dir,
        # best.pt on the whole val list (the run's own figure unless max_val_pairs subsampled it), so the EER,
        # its interval and the saved scores that paired comparisons read all describe one list
        best_pt=str(Path(result.run_dir) / "best.pt"), val_eer=interval.eer,
        val_eer_ci=(interval.low, interval.high), val_scores=str((run / "val_scores.npz").resolve()),
        best_epoch=result.best_epoch, epochs=config.epochs, resolution=config.resolution,
        finetuned_on=config.train_path if finetune_on else None, params=result.params,
        roc={"labels": pairs.labels.tolist(), "scores": [round(float(s), 6) for s in scores]})
    study.set_user_attr(RETRAIN, record.to_dict())
    (run / RETRAIN_FILE).write_text(json.dumps(record.to_dict(roc=False), indent=2))
    write_scores(run / "val_scores.txt", scores, pairs)
    title = f"trial {trial.number} retrained: val EER {interval}"
    figures = roc_det_figs(pairs.labels, scores, title)
    for fig in figures:   # roc.png, det.png: for slides
        save_png(fig, run / f"{fig.name}.png")
    (run / "roc_det.html").write_text(   # plotly.js inline once: the page works offline, from the dashboard too
        "<html><body>" + "".join(f.figure.to_html(full_html=False, include_plotlyjs=i == 0)
                                 for i, f in enumerate(figures)) + "</body></html>")
    if artifacts is not None:
        attach(study, artifacts, [run / n for n in ("retrain.json", "val_scores.txt", "roc_det.html")])
    return record


def retrain_top(study: optuna.Study, runs_root: Path, top: int | None = None, within_noise: bool = False,
                log: Callable[[str], None] = print, **options) -> list[RetrainRecord]:
    """Retrain the ``top`` best trials, or (``within_noise``) those of the top ones the val list cannot
    tell from the best; then compare the retrained models with the best of them, paired on the val list.

    The study's ``RETRAIN`` becomes the retrained model with the lowest val EER (what the report and
    export look at); ``RETRAINS`` keeps every one, with its gap to that model.
    """
    ranked = rank_top(study.get_trials(deepcopy=False), top or TOP)
    if not ranked:
        best_config(study)    # raises the no-complete-trial error
    chosen = within_noise_of_best(ranked) if within_noise else [r.trial for r in ranked]
    log(f"retraining {len(chosen)} trial(s): {', '.join(str(t.number) for t in chosen)}")
    records = [retrain(study, runs_root, log=log, number=t.number, **options) for t in chosen]
    records.sort(key=lambda r: r.val_eer)
    lead = ScoredPairs.load(records[0].val_scores)
    gaps = lead.compare_many([ScoredPairs.load(r.val_scores) for r in records[1:]])
    records[1:] = [dataclasses.replace(r, vs_best_retrained=_gap(c.reversed()))   # r - lead: > 0, worse
                   for r, c in zip(records[1:], gaps)]
    study.set_user_attr(RETRAIN, records[0].to_dict())
    study.set_user_attr(RETRAINS, {str(r.trial): r.to_dict(roc=False) for r in records})
    return records


def _gap(c: EerComparison) -> dict:
    return {"difference": c.difference, "low": c.low, "high": c.high, "within_noise": c.within_noise,
            "method": c.method}


def attach(study: optuna.Study, folder: Path, files: list[Path]) -> None:
    """Upload files as Optuna artifacts of the study (a finished trial takes none), so optuna-dashboard
    lists them on the study's page."""
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    folder.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(folder))
    for f in files:
        upload_artifact(artifact_store=store, file_path=str(f), study_or_trial=study)
