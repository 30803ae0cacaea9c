"""A plan's phases where people look: a section of ``report --all`` and the plan study's note in optuna-dashboard.

Both are the same rows (``phase_rows``): each phase in order with its status, trials, spend against its share
and its winner. The dashboard shows a study's note (Markdown, ``optuna_dashboard.save_note``) on the study's
page; the plan study (``facesearch:plan:NAME``, no trials) carries it, rewritten whenever the plan moves on.
"""
from __future__ import annotations

from typing import Any, Callable

import optuna

from .state import PREFIX, PlanState
from .status import finish_lines, status_json

COLUMNS = ["phase", "status", "trials run / fitted", "share GPU-h", "spent GPU-h", "spent / share",
           "winner (best val EER %)"]


def phase_rows(state: dict[str, Any]) -> list[list[str]]:
    rows = []
    for p in status_json(state)["phases"]:
        share, spent = p["share_hours"], p["spent_hours"]
        ratio = f"{spent / share:.0%}" if share and spent is not None else ""
        winner = "" if p["best_value"] is None else f"trial {p['best_number']}: {p['best_value']:.2f}"
        rows.append([p["name"], p["status"] or "", f"{p['trials_run'] if p['trials_run'] is not None else ''} / "
                     f"{p['trials'] if p['trials'] is not None else ''}", _h(share), _h(spent), ratio, winner])
    return rows


def headline(state: dict[str, Any]) -> str:
    s = status_json(state)
    active = f", phase {s['active']} running" if s["active"] and s["state"] == "running" else ""
    return (f"plan {s['plan']}: {s['state']}{active}; {s['spent_hours']:.3g} of {s['hours']:g} GPU-hours spent "
            f"(calibration {s['calibration_hours']:.3g})")


def _h(hours: float | None) -> str:
    return "" if hours is None else f"{hours:.3g}"


def plan_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [n.removeprefix(PREFIX) for n in optuna.get_all_study_names(storage) if n.startswith(PREFIX)]


# ------------------------------------------------------------------ report --all
def report_sections(storage: optuna.storages.BaseStorage) -> list[tuple[str, str, Callable[[Any], list[str]]]]:
    """One ``write_analysis`` section per plan the storage holds: its headline, its phases, where the finish is."""
    import html

    from ..view.tables import Table

    def section(name: str) -> Callable[[Any], list[str]]:
        def build(_db: Any) -> list[str]:
            state = PlanState(storage, name).load()
            if state is None:
                return ["<p>This plan has not stored its phases yet.</p>"]
            finish = "".join(f"<li>{html.escape(' '.join(line.split()))}</li>"
                             for line in finish_lines(state["plan"].get("finish") or {}))
            return [f"<p>{html.escape(headline(state))}</p>", Table(COLUMNS, phase_rows(state)).html()] + (
                [f"<ul>{finish}</ul>"] if finish else [])
        return build

    return [(f"plan-{name}", f"Plan {name}: phases", section(name)) for name in plan_names(storage)]


# ------------------------------------------------------------------ optuna-dashboard
def note_markdown(state: dict[str, Any]) -> str:
    from ..view.tables import Table

    lines = [f"## {headline(state)}", "", Table(COLUMNS, phase_rows(state)).markdown()]
    lines += [f"- {' '.join(line.split())}" for line in finish_lines(state["plan"].get("finish") or {})]
    return "\n".join(lines) + "\n"


def publish_note(state: PlanState) -> bool:
    """Rewrite the plan study's dashboard note from the stored state; False when optuna-dashboard (the
    dashboard extra) is not installed: the note is only its way of showing the phases."""
    try:
        from optuna_dashboard import save_note
    except ImportError:
        return False
    loaded = state.load()
    if loaded is None:
        return False
    save_note(state.study(), note_markdown(loaded))
    return True
