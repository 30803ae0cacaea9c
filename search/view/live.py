"""The live view of ``facesearch study run``: trials by state, best so far, running trials."""
from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState
from rich.console import Group
from rich.table import Table
from rich.text import Text

from facenet.units import fmt_duration

from ..cost.spend import budget_summary, time_left
from ..record import TrialRecord, best_trial
from .noise import eer_text
from .trials import counts, epoch_of, fmt_params, trial_duration


def progress_view(study: optuna.Study, supervisor, start: float) -> Group:
    trials = study.get_trials(deepcopy=False)
    c = counts(trials)
    best = best_trial(study)
    head = Text.assemble(
        (f"study {study.study_name}", "bold"), f"  {len(supervisor.procs)} worker(s)  ",
        f"elapsed {fmt_duration(time.time() - start)}  ",
        f"left ~{fmt_duration(time_left(trials, supervisor.n_trials, max(c.get('running', 0), 1)))}\n",
        "  ".join(f"{k} {v}" for k, v in c.items() if v) or "starting...",
        ("\nbest " + (f"{eer_text(best)} (trial {best.number}: {fmt_params(best.params)})" if best else "-")),
    )
    if hours := getattr(supervisor.spec, "hours", None):
        b = budget_summary(trials, hours, supervisor.n_trials)
        head.append(f"\nGPU-hours: spent {b['spent'] / 3600:.2f} of {hours:g}, {b['left'] / 3600:.2f} left, "
                    f"ETA {fmt_duration(b['eta'])}")
    running = Table(title="running", title_justify="left", expand=False)
    for col in ("#", "epoch", "last val EER %", "time", "hyper-parameters"):
        running.add_column(col)
    for t in trials:
        if t.state == TrialState.RUNNING:
            e = epoch_of(t)
            running.add_row(str(t.number), f"{e}/{TrialRecord.of(t).config.get('epochs', '?')}",
                            f"{t.intermediate_values[e]:.2f}" if e else "", fmt_duration(trial_duration(t)),
                            fmt_params(t.params))
    return Group(head, running)
