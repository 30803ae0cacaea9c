"""A trial as the tracking backends see it: its ``RunInfo`` at the start and its ``RunEnd`` from what the
objective recorded on it (state, best val EER and interval, parameter count, prune rule or failure)."""
from __future__ import annotations

import math
from pathlib import Path

import optuna

from .. import record as rec
from ..spec import StudySpec
from ..track import EpochMetrics, RunEnd, RunInfo, Tracking, open_tracking


def study_settings(spec: StudySpec) -> dict:
    """What the parent run shows of the study: how it searches, its budget and its cap."""
    return {"sampler": spec.sampler, "pruner": spec.pruner, "param_cap": spec.param_cap, "n_trials": spec.n_trials,
            "epochs": spec.epochs, "space": {k: p.to_dict() for k, p in spec.space.items()}, "fixed": spec.fixed}


def trial_run(spec: StudySpec, trial: optuna.Trial, config) -> RunInfo:
    return RunInfo(name=f"trial-{trial.number:04d}", run_dir=Path(config.run_dir), study=spec.name,
                   number=trial.number, params=dict(trial.params), config=config.to_dict())


def trial_end(trial: optuna.Trial, error: BaseException | None, value: float | None) -> RunEnd:
    attrs = trial.user_attrs
    if error is None:
        state = "COMPLETE"
    else:
        state = "PRUNED" if isinstance(error, optuna.TrialPruned) else "FAIL"
    history = [h["val_eer"] for h in attrs.get(rec.HISTORY, []) if math.isfinite(h.get("val_eer", math.nan))]
    if value is None and history:
        value = min(history)   # a pruned trial's best epoch
    interval = attrs.get(rec.VAL_EER_CI)
    reason = attrs.get(rec.PRUNE_REASON) or attrs.get(rec.FAIL_REASON) or (str(error) or type(error).__name__
                                                                          if error is not None else None)
    return RunEnd(state=state, value=value, interval=tuple(interval) if interval else None,
                  param_count=attrs.get(rec.PARAM_COUNT), pruned_by=attrs.get(rec.PRUNED_BY) if state == "PRUNED"
                  else None, reason=reason, best_epoch=attrs.get(rec.BEST_EPOCH))


def reachable_targets(spec: StudySpec, targets: dict[str, str], runs_root: Path, warn) -> dict[str, str]:
    """``targets`` less those that fail to start the study (one warning line each): run once by ``study run``
    before its workers, so the study's parent run exists once and the workers skip a server that is down."""
    tracking = open_tracking(targets, runs_root, warn)
    tracking.study_start(spec.name, spec.description, study_settings(spec))
    tracking.close()
    return {name: target for name, target in targets.items() if name in tracking.names}


def end_study(spec: StudySpec, study: optuna.Study, runs_root: Path, warn) -> None:
    """Close the study's parent run with its counts by state and its best trial (``study run`` at the end)."""
    if not spec.tracking:
        return
    trials = study.get_trials(deepcopy=False)
    summary: dict = {f"n_{s.name.lower()}": sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    if complete:
        best = min(complete, key=lambda t: t.value)
        summary |= {"best_val_eer": best.value, "best_trial": best.number}
    tracking = open_tracking(spec.tracking, runs_root, warn)
    tracking.study_end(spec.name, summary)
    tracking.close()


def tracked_fit(config, tracking: Tracking, run: RunInfo, artifacts=lambda result: [], **fit_kwargs):
    """``facenet.fit`` with its epochs and end sent to ``tracking`` (a lone ``train`` run, a retrain);
    ``artifacts(result)``: files to attach before the run ends."""
    from facenet import fit

    def on_epoch(r) -> None:
        tracking.epoch(run, EpochMetrics(r.epoch, r.loss, r.val_eer, r.lr, r.images_per_s))

    tracking.run_start(run)
    try:
        result = fit(config, on_epoch=on_epoch, **fit_kwargs)
    except BaseException as e:
        tracking.run_end(run, RunEnd("FAIL", reason=f"{type(e).__name__}: {e}"[:500]))
        raise
    tracking.artifacts(run, artifacts(result))
    tracking.run_end(run, RunEnd("COMPLETE", result.best_val_eer, result.val_eer_ci, result.params,
                                 best_epoch=result.best_epoch))
    return result
