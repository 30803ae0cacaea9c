"""``facesearch best``: the top trials with their intervals, and which ones the val list cannot tell
from the best."""
from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..record import TrialRecord
from ..storage import StorageError
from .noise import Ranked, complete_trials, eer_text, methods_used, rank_top, within_noise_of_best
from .status import trial_json
from .trials import fmt_params

VERDICT_STYLE = {"best": "bold green", "within noise": "green", "worse": "dim", "no interval": "yellow"}


def ranked_or_fail(study: optuna.Study, top: int) -> list[Ranked]:
    ranked = rank_top(study.get_trials(deepcopy=False), top)
    if not ranked:
        raise StorageError(f"study {study.study_name!r} has no complete trial yet; wait, or see: "
                           f"facesearch study status {study.study_name}")
    return ranked


def best_view(study: optuna.Study, top: int = 5) -> Group:
    ranked = ranked_or_fail(study, top)
    n_complete = len(complete_trials(study.get_trials(deepcopy=False)))
    table = Table(title=f"top {len(ranked)} of {n_complete} complete trials of study {study.study_name}",
                  title_justify="left")
    for col in ("rank", "trial", "val EER [95% CI]", "vs best (points)", "P(best better)", "comparison",
                "verdict", "hyper-parameters"):
        table.add_column(col, justify="right" if col in ("rank", "trial", "P(best better)") else "left")
    for r in ranked:
        g = r.gap
        p = "" if g is None or g.p_b_better is None else f"{g.p_b_better:.2f}"
        table.add_row(str(r.rank + 1), str(r.trial.number), eer_text(r.trial), g.gap_text() if g else "", p,
                      g.method if g else "", r.verdict, fmt_params(r.trial.params),
                      style=VERDICT_STYLE.get(r.verdict))
    tied = within_noise_of_best(ranked)
    how = methods_used([r.gap for r in ranked[1:]])
    which = ", ".join(str(t.number) for t in tied)
    notes = [f"95% intervals: identity bootstrap of the val list. Comparisons: {how}.",
             f"{len(tied)} of the top {len(ranked)} cannot be told from the best on this val list"
             + (f" (trials {which}); retrain them all with: facesearch retrain {study.study_name} "
                "--within-noise" if len(tied) > 1 else ".")]
    return Group(table, Text("\n".join(notes)), Text(""), Text("\n".join(best_lines(study, ranked[0].trial))))


def best_json(study: optuna.Study, top: int = 5) -> dict:
    ranked = ranked_or_fail(study, top)
    rows = []
    for r in ranked:
        g = r.gap
        gap = None if g is None else {"difference": g.difference, "low": g.low, "high": g.high,
                                      "p_best_better": g.p_b_better, "method": g.method}
        rows.append({"rank": r.rank + 1, **trial_json(r.trial), "verdict": r.verdict, "vs_best": gap})
    return {"study": study.study_name, **trial_json(ranked[0].trial), "top": rows}


def best_lines(study: optuna.Study, t: FrozenTrial) -> list[str]:
    r = TrialRecord.of(t)
    return [f"best trial {t.number} of study {study.study_name}: val EER {eer_text(t)}",
            f"  parameters {r.param_count or 0:,} (best epoch {r.best_epoch if r.best_epoch is not None else '?'})",
            *(f"  {k}: {v}" for k, v in t.params.items())]
