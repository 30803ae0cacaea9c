"""Reading a study back: trial tables, the best trial, and a time-left estimate."""
from __future__ import annotations

import datetime as dt
import math

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table

from ..record import CALIBRATION_STUDY, TrialRecord, best_trial

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


def counts(trials: list[FrozenTrial]) -> dict[str, int]:
    c = {"complete": 0, "pruned (cap)": 0, "pruned": 0, "running": 0, "failed": 0, "waiting": 0}
    for t in trials:
        if t.state == TrialState.PRUNED:
            c["pruned" if was_trained(t) else "pruned (cap)"] += 1
        elif t.state == TrialState.FAIL:
            c["failed"] += 1
        else:
            c[t.state.name.lower()] += 1
    return c


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


def fmt_seconds(s: float | None) -> str:
    if s is None or math.isnan(s):
        return "?"
    s = int(s)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def fmt_params(params: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def trials_table(study: optuna.Study, title: str | None = None, limit: int | None = None) -> Table:
    trials = study.get_trials(deepcopy=False)
    best = best_trial(study)
    table = Table(title=title or f"study {study.study_name}", title_justify="left")
    for col, just in (("#", "right"), ("state", "left"), ("val EER %", "right"), ("epochs", "right"),
                      ("params", "right"), ("time", "right"), ("est.", "right"), ("hyper-parameters", "left"),
                      ("reason", "left")):
        table.add_column(col, justify=just, overflow="fold")
    shown = trials if limit is None else trials[-limit:]
    for t in shown:
        eer = f"{t.value:.2f}" if t.value is not None else (
            f"({t.intermediate_values[epoch_of(t)]:.2f})" if t.intermediate_values else "")
        state = t.state.name.lower()
        style = "bold green" if best is not None and t.number == best.number else None
        r = TrialRecord.of(t)
        count, est = r.param_count, r.estimate.get("seconds")
        table.add_row(str(t.number), state, eer, str(epoch_of(t) or ""), f"{count / 1e6:.2f}M" if count else "",
                      fmt_seconds(trial_duration(t)), "" if est is None else fmt_seconds(est),
                      fmt_params(t.params), reason(t), style=style)
    return table


def studies_table(storage: optuna.storages.BaseStorage) -> Table:
    """One row per study in the storage: trial counts by state and the best val EER."""
    table = Table(title="studies")
    for col in ("study", "trials", "complete", "pruned", "running", "failed", "best val EER %", "best #"):
        table.add_column(col)
    for name in sorted(n for n in optuna.get_all_study_names(storage) if n != CALIBRATION_STUDY):
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        c = counts(trials)
        best = best_trial(study)
        table.add_row(name, str(len(trials)), str(c["complete"]), str(c["pruned"] + c["pruned (cap)"]),
                      str(c["running"]), str(c["failed"]), f"{best.value:.2f}" if best else "",
                      str(best.number) if best else "")
    return table


def summary_line(study: optuna.Study, n_trials: int | None, hours: float | None = None) -> str:
    """Trials by state, and with a trial budget, the time left at the pace so far; with a GPU-hour
    budget, a second line: spent, left, and the ETA from the trials' estimates and the running workers."""
    trials = study.get_trials(deepcopy=False)
    c = counts(trials)
    line = ", ".join(f"{k} {v}" for k, v in c.items() if v)
    if n_trials:
        line += f"; budget {n_trials}; about {fmt_seconds(time_left(trials, n_trials, c['running'] or 1))} left"
    if hours:
        from ..cost.spend import budget_summary

        b = budget_summary(trials, hours, n_trials)
        spent = b["spent"] / 3600
        line += (f"\nGPU-hours: spent {spent:.2f} of {hours:g} ({100 * spent / hours:.0f}%), "
                 f"{b['left'] / 3600:.2f} left; ETA {fmt_seconds(b['eta'])} at {b['workers']} worker(s)")
    return line


def best_lines(study: optuna.Study, t: FrozenTrial) -> list[str]:
    r = TrialRecord.of(t)
    return [f"best trial {t.number} of study {study.study_name}: val EER {t.value:.2f}%",
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
