"""The rungs of a successive-halving or Hyperband study: at which epochs trials are compared, how many
reached each rung and how many went on past it (epochs are the resource)."""
from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.table import Table

RUNG_PRUNERS = {"successive_halving": 4, "hyperband": 3}   # name -> Optuna's default reduction factor


def _bracket_of(pruner: Any, study: optuna.Study) -> tuple[int, Any]:
    """Brackets of a Hyperband pruner and a trial -> bracket function (Optuna keeps both private)."""
    try:
        pruner._try_initialization(study)
        n = pruner._n_brackets
        if n:
            return n, lambda t: pruner._get_bracket_id(study, t)
    except (AttributeError, TypeError, ValueError):
        pass
    return 1, lambda t: 0


def rung_rows(study: optuna.Study, pruner_spec: dict[str, Any], epochs: int | None) -> list[dict[str, Any]]:
    """One row per (bracket, rung) up to ``epochs``; empty for other pruners or an unknown resource."""
    from ..spec.components import PRUNERS

    name = pruner_spec.get("name")
    if name not in RUNG_PRUNERS:
        return []
    eta = pruner_spec.get("reduction_factor", RUNG_PRUNERS[name])
    low = pruner_spec.get("min_resource", 1)
    if not isinstance(low, int):
        return []
    top = epochs or pruner_spec.get("max_resource")
    if not isinstance(top, int):
        return []
    options = {k: v for k, v in pruner_spec.items() if k != "name"}
    brackets, bracket_of = (1, lambda t: 0)
    if name == "hyperband":
        options.setdefault("max_resource", top)
        options.setdefault("min_resource", low)
        brackets, bracket_of = _bracket_of(getattr(optuna.pruners, PRUNERS[name])(**options), study)
    base = pruner_spec.get("min_early_stopping_rate", 0) if name == "successive_halving" else 0
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    rows = []
    for b in range(brackets):
        members = [t for t in trials if bracket_of(t) == b]
        rung, epoch = 0, low * eta ** (base + b)
        while epoch <= top:
            key = f"completed_rung_{rung}"
            reached = [t for t in members if key in t.system_attrs]
            rows.append({"bracket": b, "rung": rung, "epoch": epoch, "reached": len(reached),
                         "went_on": sum(_last_epoch(t) > epoch for t in reached),
                         "stopped": sum(t.state == TrialState.PRUNED and _last_epoch(t) == epoch
                                        for t in reached)})
            rung, epoch = rung + 1, low * eta ** (base + b + rung + 1)
    return rows


def _last_epoch(t: FrozenTrial) -> int:
    return max(t.intermediate_values, default=0)


def rungs_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("bracket", "rung", "epoch", "reached", "went on", "pruned there"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*(str(r[k]) for k in ("bracket", "rung", "epoch", "reached", "went_on", "stopped")))
    return table
