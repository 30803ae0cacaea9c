"""Tables of a plan: the fitted plan (before and between phases) and its progress from the storage."""
from __future__ import annotations

from typing import Any

from facenet.units import fmt_hours

from .fit import PlanFit

FIT_COLUMNS = ("phase", "from", "weight", "trials", "epochs", "resolution", "identities", "GPU-h", "share GPU-h",
               "wall-h", "status")


def fit_table(fit: PlanFit, device: str, gpus: int, title: str = "plan"):
    """Each phase with its fitted knobs, its estimate and share (a run phase: measured), then the reserves."""
    from rich.table import Table

    table = Table(title=f"{title} on {gpus} x {device}: {fit.hours:g} GPU-hours", title_justify="left")
    for col in FIT_COLUMNS:
        table.add_column(col, justify="left" if col in ("phase", "from", "status") else "right")
    for f in fit.fits:
        p = f.phase
        source = "" if f.spec.from_ is None else f.spec.from_.study + (f" top {f.spec.from_.top}"
                                                                        if f.spec.from_.top else "")
        if f.done:
            d = f.done
            table.add_row(f.name, source, f"{f.entry.weight:g}", str(d.get("trials_run", "")), "", "", "",
                          fmt_hours(d["spent_s"]), fmt_hours(d.get("share_s", 0.0)), "", "done (measured)")
            continue
        approx = "~" if any(q.approximate for q in p.points) else ""
        changed = ", ".join(f.changes())
        table.add_row(f.name, source, f"{f.entry.weight:g}", str(p.trials), p.epochs(), p.shown("resolution"),
                      p.shown("max_identities"), fmt_hours(p.seconds()) + approx, fmt_hours(f.share_s),
                      fmt_hours(p.wall_seconds(gpus)), changed or "as written")
    table.add_section()
    if fit.calibration_s:
        table.add_row("calibration", "", "", "", "", "", "", fmt_hours(fit.calibration_s), "", "", "spent")
    table.add_row("finishing", "", "", "1", "", "", "", fmt_hours(fit.reserve_s), fmt_hours(fit.reserve_s), "",
                  "reserved: " + fit.finish_steps)
    total = fit.total_s()
    verdict = "fits" if total <= fit.hours * 3600 + 1e-6 else f"{fmt_hours(total - fit.hours * 3600)} over"
    table.add_row("total", "", "", str(sum(f.phase.trials for f in fit.fits if not f.done)), "", "", "",
                  fmt_hours(total), f"{fit.hours:g}", "", verdict)
    return table


# ------------------------------------------------------------------ progress
def status_json(state: dict[str, Any]) -> dict[str, Any]:
    """Stable keys: plan, file, hours, state, active, spent_hours, left_hours, phases[], finish."""
    head = state["plan"]
    spent = head.get("calibration_s", 0.0) + sum(r.get("spent_s", 0.0) for r in state["phases"]) \
        + head.get("finish_s", 0.0)
    phases = [{"name": r["name"], "status": r.get("status"), "trials": r.get("overrides", {}).get("n_trials"),
               "trials_run": r.get("trials_run"), "epochs": r.get("overrides", {}).get("epochs"),
               "resolution": r.get("overrides", {}).get("resolution"),
               "identities": r.get("overrides", {}).get("max_identities"),
               "share_hours": _h(r.get("share_s")), "estimate_hours": _h(r.get("estimate_s")),
               "spent_hours": _h(r.get("spent_s")), "best_value": r.get("best_value"),
               "best_number": r.get("best_number"), "started": r.get("started"), "ended": r.get("ended")}
              for r in state["phases"]]
    return {"plan": head["name"], "file": head.get("file"), "hours": head["hours"], "state": head.get("state"),
            "active": head.get("active"), "device": head.get("device"),
            "calibration_hours": _h(head.get("calibration_s", 0.0)), "spent_hours": _h(spent),
            "left_hours": round(head["hours"] - spent / 3600, 4), "phases": phases,
            "finish": head.get("finish") or {}}


def _h(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 4)


def status_table(state: dict[str, Any]):
    from rich.table import Table

    s = status_json(state)
    table = Table(title=f"plan {s['plan']}: {s['state']}, {s['spent_hours']:.3g} of {s['hours']:g} GPU-hours "
                        f"spent" + (f", phase {s['active']} running" if s["active"] and s["state"] == "running"
                                    else ""), title_justify="left")
    for col in ("phase", "status", "trials", "epochs", "resolution", "identities", "share GPU-h", "spent GPU-h",
                "best val EER %"):
        table.add_column(col, justify="left" if col in ("phase", "status") else "right")
    for p in s["phases"]:
        run = f"{p['trials_run']}/{p['trials']}" if p["trials_run"] is not None else str(p["trials"] or "")
        table.add_row(p["name"], p["status"] or "", run, _text(p["epochs"], "as written"),
                      _text(p["resolution"], "as written"), _text(p["identities"], "as written"),
                      _text(p["share_hours"]), _text(p["spent_hours"]),
                      "" if p["best_value"] is None else f"{p['best_value']:.2f} (trial {p['best_number']})")
    return table


def _text(value: Any, default: str = "") -> str:
    if value is None:
        return default
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def finish_lines(finish: dict[str, Any]) -> list[str]:
    """Where each finished piece is (``status_json(...)["finish"]``)."""
    labels = (("study", "winner's study"), ("trial", "winner trial"), ("run", "retrained run"),
              ("bundle", "export bundle"), ("scores", "test scores"), ("test_eer", "test EER %"),
              ("report", "plan report"))
    return [f"  {label:16s} {finish[key]}" for key, label in labels if finish.get(key) is not None]


def phases_markdown(state: dict[str, Any]) -> str:
    """The phases as a Markdown table, for the plan's report folder."""
    s = status_json(state)
    lines = ["| phase | status | trials | share GPU-h | spent GPU-h | best val EER % |", "|---|---|---|---|---|---|"]
    for p in s["phases"]:
        best = "" if p["best_value"] is None else f"{p['best_value']:.2f} (trial {p['best_number']})"
        lines.append(f"| {p['name']} | {p['status']} | {p['trials_run'] or 0}/{p['trials']} | "
                     f"{_text(p['share_hours'])} | {_text(p['spent_hours'])} | {best} |")
    return "\n".join(lines) + "\n"


