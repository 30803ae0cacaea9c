"""The plan's experiment record: one row per trial of every study (and per retrained model), with the
columns a written report asks for, exported as CSV and Markdown."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..record import (CONFIG, NOTES, PARAM_COUNT, RETRAINED_FROM, VAL_EER_CI, VAL_SCORES, TrialRecord,
                      retrain_records)
from .noise import best_reached
from .tables import Table

COLUMNS = ["number", "name", "study", "trial", "state", "model", "loss", "optimizer", "scheduler", "lr",
           "weight_decay", "batch_size", "n_out", "margin", "scale", "augment", "training set",
           "loss per epoch", "val EER per epoch", "final val EER", "best val EER", "best val EER low",
           "best val EER high", "param_count", "notes"]
SETTINGS = ("model", "loss", "optimizer", "scheduler", "lr", "weight_decay", "batch_size", "n_out", "margin",
            "scale", "augment")


def regime(config: dict[str, Any]) -> str:
    """The training data of a run: ``train1``, ``train2``, or ``train1 -> train2 (fine-tuned)``."""
    name = Path(config.get("train_path") or "?").name
    start = config.get("initial_model")
    if not start:
        return name
    source = Path(start).parent / "config.json"    # the pre-training run's own config, when it is at hand
    try:
        before = Path(json.loads(source.read_text())["train_path"]).name
    except (OSError, ValueError, KeyError):
        before = "pre-trained"
    return f"{before} -> {name} (fine-tuned)"


def retrained_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's retrained models as trials (value, interval, scores, config), so the same comparisons
    apply to them; a record without a config beside its model is skipped."""
    out = []
    for number, r in sorted(retrain_records(study).items()):
        try:
            config = json.loads((Path(r.run_dir) / "config.json").read_text())
        except (OSError, ValueError, TypeError):
            config = {}
        attrs = {CONFIG: config, RETRAINED_FROM: number, NOTES: f"retrain of trial {number}"
                 + (f", fine-tuned on {Path(r.finetuned_on).name}" if r.finetuned_on else "")}
        if r.val_eer_ci:
            attrs[VAL_EER_CI] = list(r.val_eer_ci)
        if r.val_scores:
            attrs[VAL_SCORES] = r.val_scores
        if r.params:
            attrs[PARAM_COUNT] = r.params
        out.append(optuna.trial.create_trial(value=r.val_eer, user_attrs=attrs))
    return out


def _epochs(history: list[dict], key: str) -> str:
    return " ".join(f"{h[key]:.4g}" for h in history if h.get(key) is not None)


def _notes(t: FrozenTrial, r: TrialRecord) -> str:
    if NOTES in t.user_attrs:
        return t.user_attrs[NOTES]
    if t.state == TrialState.PRUNED:
        return f"pruned ({r.pruned_by}): {r.reason}" if r.pruned_by else "pruned"
    if t.state == TrialState.FAIL:
        return f"failed: {r.reason}"
    return "" if t.state == TrialState.COMPLETE else t.state.name.lower()


def experiment_table(studies: list[optuna.Study]) -> Table:
    """Every trial of every study, then each study's retrained models, numbered in that order."""
    table = Table(COLUMNS)
    for study in studies:
        retrained = retrained_trials(study)
        for t in [*study.get_trials(deepcopy=False), *retrained]:
            r = TrialRecord.of(t)
            again = t.user_attrs.get(RETRAINED_FROM)
            number, run = ((again, f"retrain-{again:04d}") if again is not None
                           else (t.number, f"trial-{t.number:04d}"))
            low, high = r.val_eer_ci or (None, None)
            final = r.history[-1].get("val_eer") if r.history else t.value
            table.rows.append([len(table.rows) + 1, f"{study.study_name}/{run}", study.study_name, number,
                               "RETRAINED" if again is not None else t.state.name,
                               *(r.config.get(k, t.params.get(k)) for k in SETTINGS),
                               regime(r.config) if r.config else "", _epochs(r.history, "loss"),
                               _epochs(r.history, "val_eer"), final, best_reached(t)[0], low, high,
                               r.param_count, _notes(t, r)])
    return table


def write_experiments(studies: list[optuna.Study], out: Path) -> Table:
    table = experiment_table(studies)
    table.write_csv(out / "experiments.csv")
    (out / "experiments.md").write_text("# Experiment record\n\n" + table.markdown())
    return table
