"""Tables of the reports: one ``Table`` written as HTML, CSV and Markdown, and the trials' record."""
from __future__ import annotations

import csv
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from ..record import TrialRecord
from .noise import best_reached
from .trials import epoch_of, trial_duration


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def write_csv(self, path: Path) -> None:
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.columns)
            w.writerows([_raw(v) for v in row] for row in self.rows)

    def markdown(self) -> str:
        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
        return "\n".join([line(self.columns), line(["---"] * len(self.columns)),
                          *(line([_cell(v) for v in row]) for row in self.rows)]) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                       for row in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _raw(v: Any) -> Any:
    if isinstance(v, float) and v != v:   # NaN: an empty cell, as None
        return ""
    return "" if v is None else round(v, 6) if isinstance(v, float) else v


def _cell(v: Any) -> str:
    if isinstance(v, float) and v != v:
        return ""
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def config_value(t: FrozenTrial, key: str) -> Any:
    """A TrainConfig field of the trial: its stored config, else its params."""
    return TrialRecord.of(t).config.get(key, t.params.get(key))


def trials_table(trials: list[FrozenTrial]) -> Table:
    """One row per trial: best val EER with its 95 % interval, epochs, size, time, params, why it stopped."""
    names = list(dict.fromkeys(k for t in trials for k in t.params))
    table = Table(["number", "state", "val_eer", "val_eer_low", "val_eer_high", "best_epoch", "epochs_run",
                   "param_count", "seconds", "estimate_s", "device", *names, "pruned_by", "reason"])
    for t in trials:
        value, epoch = best_reached(t)
        r = TrialRecord.of(t)
        low, high = r.val_eer_ci or (None, None)
        seconds = r.seconds if r.seconds is not None else trial_duration(t)
        table.rows.append([t.number, t.state.name, value, low, high, epoch, epoch_of(t), r.param_count,
                           seconds, r.estimate and r.estimate.seconds, r.device, *(t.params.get(k) for k in names),
                           r.pruned_by, r.reason])
    return table
