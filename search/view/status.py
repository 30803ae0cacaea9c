"""Reading a study back: trial tables, the best trial, and a time-left estimate."""
from __future__ import annotations

import datetime as dt

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table

from facenet.units import fmt_duration

from ..record import CALIBRATION_STUDY, TrialRecord, best_trial
from .noise import eer_text

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def console() -> Console:
    """A terminal's own width; piped output (logs, CI) gets room for a whole trial row per line."""
    import sys

    return Console() if sys.stdout.isatty() else Console(width=200)


def trial_duration(t: FrozenTrial) -> float | None:
    if t.datetime_start is None:
        return None
    end = t.datetime_complete or dt.datetime.now()
    return (end - t.datetime_start).total_seconds()


def reason(t: FrozenTrial) -> str:
    return TrialRecord.of(t).reason


def was_trained(t: FrozenTrial) -> bool:
    return TrialRecord.of(t).trained


def epoch_of(t: FrozenTrial) -> int:
    return max(t.intermediate_values, default=0)


def state_of(t: FrozenTrial) -> str:
    """The state, with the rule that pruned a pruned trial: ``pruned (median)``, ``pruned (cap)``..."""
    if t.state == TrialState.PRUNED:
        return f"pruned ({TrialRecord.of(t).pruned_by or 'pruner'})"
    return "failed" if t.state == TrialState.FAIL else t.state.name.lower()


def counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials by state, pruned ones by rule."""
    c = {"complete": 0}
    for t in trials:
        state = state_of(t)
        c[state] = c.get(state, 0) + 1
    return c


def pruned(c: dict[str, int]) -> int:
    return sum(n for state, n in c.items() if state.startswith("pruned"))


def time_left(trials: list[FrozenTrial], n_trials: int | None, workers: int) -> float | None:
    """Seconds until the budget is spent: mean trained-trial time x trials left / parallel workers."""
    if not n_trials:
        return None
    spent = [d for t in trials if t.state in FINISHED and was_trained(t) and (d := trial_duration(t))]
    left = n_trials - sum(t.state in FINISHED for t in trials)
    if left <= 0:
        return 0.0
    if not spent:
        return None
    return sum(spent) / len(spent) * left / max(workers, 1)


def fmt_params(params: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


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
                      fmt_params(t.params), reason(t), style=style)
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
        from ..cost.spend import budget_summary

        b = budget_summary(trials, hours, n_trials)
        spent = b["spent"] / 3600
        line += (f"\nGPU-hours: spent {spent:.2f} of {hours:g} ({100 * spent / hours:.0f}%), "
                 f"{b['left'] / 3600:.2f} left; ETA {fmt_duration(b['eta'])} at {b['workers']} worker(s)")
    return line


def best_lines(study: optuna.Study, t: FrozenTrial) -> list[str]:
    r = TrialRecord.of(t)
    return [f"best trial {t.number} of study {study.study_name}: val EER {eer_text(t)}",
            f"  parameters {r.param_count or 0:,} (best epoch {r.best_epoch if r.best_epoch is not None else '?'})",
            *(f"  {k}: {v}" for k, v in t.params.items())]


def params_table(rows: list[dict], cap: int) -> Table:
    """``facenet.models.param_table`` rows against the cap."""
    table = Table(title=f"parameters by the cap rule (cap {cap:,})")
    keys = [k for k in rows[0] if k not in ("params", "fits")]
    for k in keys:
        table.add_column(k)
    table.add_column("params", justify="right")
    table.add_column("fits")
    for r in rows:
        table.add_row(*[str(r[k]) if r[k] is not None else "" for k in keys], f"{r['params']:,}",
                      "[green]yes[/]" if r["fits"] else "[red]no[/]")
    return table


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


def builtin_json() -> list[dict]:
    """The studies shipped with facesearch: name, file and what each asks."""
    import yaml

    from ..builtin import builtin_names, builtin_path

    out = []
    for name in builtin_names():
        path = builtin_path(name)
        description = (yaml.safe_load(path.read_text()) or {}).get("description") or ""
        out.append({"name": name, "path": str(path), "description": " ".join(description.split())})
    return out


def builtin_table() -> Table:
    table = Table(title="built-in studies (facesearch study run NAME)", title_justify="left")
    for col in ("name", "what it asks"):
        table.add_column(col, overflow="fold")
    for s in builtin_json():
        table.add_row(s["name"], s["description"])
    return table


def data_check_table(rows: list[tuple[str, str, str]], root) -> Table:
    """``facenet.data.datacheck`` rows: one line per set and check."""
    table = Table("set", "check", "value", title=f"data check of {root}")
    for row in rows:
        table.add_row(*row)
    return table
