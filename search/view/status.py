"""A study's status: its trials table, a summary line with the time left, and the ``--json`` forms (stable
keys, documented in the README)."""
from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.table import Table

from facenet.units import fmt_duration

from ..cost.spend import budget_summary, time_left
from ..record import CALIBRATION_STUDY, TrialRecord, best_trial
from .noise import eer_text
from .trials import counts, epoch_of, fmt_params, pruned, state_of, trial_duration


def trials_table(study: optuna.Study, title: str | None = None, limit: int | None = None) -> Table:
    trials = study.get_trials(deepcopy=False)
    best = best_trial(study)
    table = Table(title=title or f"study {study.study_name}", title_justify="left")
    for col, just in (("#", "right"), ("state", "left"), ("val EER [95% CI]", "right"), ("epochs", "right"),
                      ("params", "right"), ("time", "right"), ("est.", "right"),
                      ("hyper-parameters", "left"),
                      ("reason", "left")):
        table.add_column(col, justify=just, overflow="fold")
    shown = trials if limit is None else trials[-limit:]
    for t in shown:
        eer = eer_text(t)
        if t.state != TrialState.COMPLETE and eer:
            eer = f"({eer})"   # stopped early: the best epoch it reached
        state = state_of(t)
        style = "bold green" if best is not None and t.number == best.number else None
        r = TrialRecord.of(t)
        count, est = r.param_count, r.estimate and r.estimate.seconds
        table.add_row(str(t.number), state, eer, str(epoch_of(t) or ""), f"{count / 1e6:.2f}M" if count else "",
                      fmt_duration(trial_duration(t)), "" if est is None else fmt_duration(est),
                      fmt_params(t.params), r.reason, style=style)
    return table


def studies_table(storage: optuna.storages.BaseStorage) -> Table:
    """One row per study in the storage: trial counts by state and the best val EER."""
    table = Table(title="studies")
    for col in ("study", "trials", "complete", "pruned", "running", "failed", "best val EER [95% CI]",
                "best #"):
        table.add_column(col)
    for name in sorted(n for n in optuna.get_all_study_names(storage) if n != CALIBRATION_STUDY):
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        c = counts(trials)
        best = best_trial(study)
        table.add_row(name, str(len(trials)), str(c["complete"]), str(pruned(c)),
                      str(c.get("running", 0)), str(c.get("failed", 0)), eer_text(best) if best else "",
                      str(best.number) if best else "")
    return table


def summary_line(study: optuna.Study, n_trials: int | None, hours: float | None = None) -> str:
    """Trials by state, and with a trial budget, the time left at the pace so far; with a GPU-hour
    budget, a second line: spent, left, and the ETA from the trials' estimates and the running workers."""
    trials = study.get_trials(deepcopy=False)
    c = counts(trials)
    line = ", ".join(f"{k} {v}" for k, v in c.items() if v)
    if n_trials:
        left = time_left(trials, n_trials, c.get("running") or 1)
        line += f"; budget {n_trials}; about {fmt_duration(left)} left"
    if hours:
        b = budget_summary(trials, hours, n_trials)
        spent = b["spent"] / 3600
        line += (f"\nGPU-hours: spent {spent:.2f} of {hours:g} ({100 * spent / hours:.0f}%), "
                 f"{b['left'] / 3600:.2f} left; ETA {fmt_duration(b['eta'])} at {b['workers']} worker(s)")
    return line


# ---------------------------------------------------------------- --json: stable keys, documented in the README
def trial_json(t: FrozenTrial) -> dict:
    r = TrialRecord.of(t)
    return {"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": dict(t.params),
            "param_count": r.param_count, "best_epoch": r.best_epoch, "epochs_run": epoch_of(t),
            "seconds": r.seconds, "pruned_by": r.pruned_by, "reason": r.reason,
            "val_eer_ci": list(r.val_eer_ci) if r.val_eer_ci else None}


def studies_json(storage: optuna.storages.BaseStorage) -> list[dict]:
    out = []
    for name in sorted(n for n in optuna.get_all_study_names(storage) if n != CALIBRATION_STUDY):
        study = optuna.load_study(study_name=name, storage=storage)
        best = best_trial(study)
        out.append({"study": name, "trials": len(study.trials), "counts": counts(study.get_trials(deepcopy=False)),
                    "best_value": best.value if best else None, "best_number": best.number if best else None})
    return out


def status_json(study: optuna.Study, n_trials: int | None, last: int | None = None) -> dict:
    trials = study.get_trials(deepcopy=False)
    best = best_trial(study)
    return {"study": study.study_name, "n_trials": n_trials, "counts": counts(trials),
            "best_number": best.number if best else None,
            "trials": [trial_json(t) for t in (trials if last is None else trials[-last:])]}
