"""The study report: one self-contained HTML page plus the files it is built from.

``out/report.html``        header (study, description, trial counts, best trial), Optuna's figures,
                           EER by architecture and by loss, ROC and DET of the retrained best run,
                           the experiment record of every trial; plotly.js inline once, no network
``out/figures/NAME.html``  each figure on its own page (sharing ``figures/plotly.min.js``)
``out/trials.csv|md``      the experiment record: one row per trial
``out/eer_by_model.csv``, ``out/eer_by_loss.csv``

A section that cannot be drawn for this study (too few trials, no retrained run) is
replaced by a note saying why, so the page is written for any study, even an empty one.
For a pruned or failed trial, ``val_eer`` and ``best_epoch`` are the best epoch it reached
before it was stopped (a complete trial's value is the same minimum over its epochs).
"""
from __future__ import annotations

import csv
import html
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from ..record import DESCRIPTION, RETRAIN, TrialRecord, best_trial, stored_spec
from .proxy import proxy_pairs, spearman
from .status import counts, epoch_of, trial_duration
TARGET = "val EER %"
DET_TICKS = (0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99)
DET_CLIP = 1e-4            # rates of exactly 0 or 1 sit at the edge of the normal-deviate axes


class Skip(Exception):
    """A section this study cannot show; the message replaces it on the page."""


@dataclass
class Fig:
    name: str              # file figures/NAME.html and div id fig-NAME
    figure: go.Figure


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
    return "" if v is None else round(v, 6) if isinstance(v, float) else v


def _cell(v: Any) -> str:
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


Part = Fig | str           # a figure, or an HTML fragment


class Context:
    """The study read once; what several sections share is computed lazily, once."""

    def __init__(self, study: optuna.Study):
        self.study = study
        self.trials = study.get_trials(deepcopy=False)
        self.complete = [t for t in self.trials if t.state == TrialState.COMPLETE and t.value is not None]
        self._importances: dict[str, float] | Skip | None = None
        self.varying: list[str] = []   # the parameters importances are computed over

    def need_complete(self, n: int = 1) -> None:
        if len(self.complete) < n:
            raise Skip(f"needs at least {n} complete trial{'s' * (n > 1)}; this study has {len(self.complete)}")

    def evaluator(self) -> optuna.importance.BaseImportanceEvaluator:
        return optuna.importance.FanovaImportanceEvaluator(seed=0)   # seeded: figure and ranking agree

    def importances(self) -> dict[str, float]:
        if self._importances is None:
            try:
                self._importances = self._compute_importances()
            except Skip as e:
                self._importances = e
        if isinstance(self._importances, Skip):
            raise self._importances
        return self._importances

    def _compute_importances(self) -> dict[str, float]:
        self.need_complete(2)
        shared = optuna.search_space.intersection_search_space(self.complete)   # what evaluators consider
        self.varying = sorted(k for k in shared if len({repr(t.params[k]) for t in self.complete}) > 1)
        if not self.varying:
            raise Skip("no parameter present in every complete trial varies across them")
        try:
            return optuna.importance.get_param_importances(self.study, evaluator=self.evaluator(),
                                                           params=self.varying)
        except Exception as e:   # evaluators fail on some tiny or degenerate studies
            raise Skip(f"the importance evaluator failed on this study ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------- sections

def _history(ctx: Context) -> list[Part]:
    ctx.need_complete()
    return [Fig("history", optuna.visualization.plot_optimization_history(ctx.study, target_name=TARGET))]


def _importance(ctx: Context) -> list[Part]:
    ctx.importances()
    fig = optuna.visualization.plot_param_importances(ctx.study, evaluator=ctx.evaluator(), params=ctx.varying,
                                                      target_name=TARGET)
    return [Fig("importances", fig)]


def _intermediate(ctx: Context) -> list[Part]:
    if not any(t.intermediate_values for t in ctx.trials):
        raise Skip("no trial has reported a per-epoch val EER yet")
    return ["<p>Val EER per epoch of every trained trial; pruned trials stop early.</p>",
            Fig("intermediate", optuna.visualization.plot_intermediate_values(ctx.study))]


def _parallel(ctx: Context) -> list[Part]:
    ctx.need_complete()
    return [Fig("parallel", optuna.visualization.plot_parallel_coordinate(ctx.study, target_name=TARGET))]


def _slice(ctx: Context) -> list[Part]:
    ctx.need_complete()
    return [Fig("slice", optuna.visualization.plot_slice(ctx.study, target_name=TARGET))]


def _contours(ctx: Context) -> list[Part]:
    ranked = list(ctx.importances())
    if len(ranked) < 2:
        raise Skip(f"needs two varying parameters; this study varies only {', '.join(ranked)}")
    pairs = [(ranked[0], other) for other in ranked[1:3]]   # the top pair, and the top with the third
    return [Fig(f"contour-{i}", optuna.visualization.plot_contour(ctx.study, params=list(p), target_name=TARGET))
            for i, p in enumerate(pairs, 1)]


def _eer_by(key: str, label: str) -> Callable[[Context], list[Part]]:
    def section(ctx: Context) -> list[Part]:
        ctx.need_complete()
        return [eer_table(ctx.complete, key, label).html()]
    return section


def _roc_det(ctx: Context) -> list[Part]:
    record = ctx.study.user_attrs.get(RETRAIN) or {}
    roc = record.get("roc")
    if not roc:
        raise Skip("no retrained run with val scores is recorded on this study; run `facesearch retrain` first")
    labels, scores = np.asarray(roc["labels"], dtype=int), np.asarray(roc["scores"], dtype=float)
    if len(set(labels.tolist())) < 2:
        raise Skip("the recorded val pairs hold only one label; ROC needs same and different pairs")
    from facenet.evaluate import eer   # the course formula, one place

    title = (f"trial {record.get('trial')} retrained: val EER {eer(labels, scores):.2f}% "
             f"over {len(labels)} pairs")
    return [f"<p>{html.escape(title)}; run {html.escape(str(record.get('run_dir', '')))}</p>",
            Fig("roc", roc_figure(labels, scores, title)), Fig("det", det_figure(labels, scores, title))]


def _proxy(ctx: Context) -> list[Part]:
    pairs = proxy_pairs(ctx.trials)
    if not pairs:
        raise Skip("no complete promoted trial: this study re-runs no proxy's best (from: {study, top})")
    first = next(t for t in ctx.trials if t.number == pairs[0][0])
    study = TrialRecord.of(first).promoted_from.get("study", "?")
    rho = spearman([p[2] for p in pairs], [p[3] for p in pairs])
    verdict = (f"Spearman rank correlation of proxy and full-fidelity val EER over {len(pairs)} promoted "
               f"trials: " + (f"<b>{rho:.2f}</b> (1: the proxy ranks them as full fidelity does; near 0 or "
                              f"below: it does not)" if not math.isnan(rho)
                              else "undefined (needs 3 trials and EERs that differ)"))
    rows = sorted(pairs, key=lambda p: p[3])
    table = Table(["trial", f"{study} trial", "proxy val EER %", "full val EER %"], [list(p) for p in rows])
    return [f"<p>{verdict}</p>", table.html()]


def _rungs(ctx: Context) -> list[Part]:
    from .rungs import rung_rows

    spec = stored_spec(ctx.study)
    rows = rung_rows(ctx.study, spec.get("pruner") or {}, spec.get("epochs"))
    if not rows:
        raise Skip("the study's pruner has no rungs (only successive_halving and hyperband do)")
    keys = ("bracket", "rung", "epoch", "reached", "went_on", "stopped")
    return [Table(["bracket", "rung", "epoch", "reached", "went on", "pruned there"],
                  [[r[k] for k in keys] for r in rows]).html()]


def _trials(ctx: Context) -> list[Part]:
    if not ctx.trials:
        raise Skip("the study has no trials yet")
    return ['<p>Also as <a href="trials.csv">trials.csv</a> and <a href="trials.md">trials.md</a>.</p>',
            '<div class="wide">' + trials_table(ctx.trials).html() + "</div>"]


def _spec(ctx: Context) -> list[Part]:
    spec = stored_spec(ctx.study)
    if not spec:
        raise Skip("the study holds no facesearch spec (created outside facesearch?)")
    text = json.dumps(spec, indent=2)
    return [f"<details><summary>study spec</summary><pre>{html.escape(text)}</pre></details>"]


SECTIONS: list[tuple[str, str, Callable[[Context], list[Part]]]] = [
    ("history", "Optimisation history", _history),
    ("importances", "Parameter importances", _importance),
    ("intermediate", "Intermediate values (pruning)", _intermediate),
    ("rungs", "Rungs (successive halving, Hyperband)", _rungs),
    ("parallel", "Parallel coordinates", _parallel),
    ("slice", "Slices", _slice),
    ("contours", "Contours of the most important parameters", _contours),
    ("eer-model", "EER by architecture", _eer_by("model", "model")),
    ("eer-loss", "EER by loss", _eer_by("loss", "loss")),
    ("roc-det", "ROC and DET of the best run", _roc_det),
    ("proxy", "Proxy vs full fidelity", _proxy),
    ("trials", "Trials", _trials),
    ("spec", "Study spec", _spec),
]


# ---------------------------------------------------------------- tables and figures

def config_value(t: FrozenTrial, key: str) -> Any:
    """A TrainConfig field of the trial: its stored config, else its params."""
    return TrialRecord.of(t).config.get(key, t.params.get(key))


def eer_table(complete: list[FrozenTrial], key: str, label: str) -> Table:
    groups: dict[str, list[float]] = {}
    for t in complete:
        value = config_value(t, key)
        groups.setdefault("?" if value is None else str(value), []).append(t.value)
    rows = [[name, min(v), statistics.median(v), len(v)] for name, v in groups.items()]
    return Table([label, "best val EER %", "median val EER %", "complete trials"],
                 sorted(rows, key=lambda r: (r[1], r[0])))


def best_reached(t: FrozenTrial) -> tuple[float | None, int | None]:
    """The trial's best val EER and its epoch: the objective value, else the best epoch reported."""
    best_epoch = TrialRecord.of(t).best_epoch
    if t.value is not None:
        return t.value, best_epoch
    if not t.intermediate_values:
        return None, best_epoch
    step = min(t.intermediate_values, key=lambda s: (t.intermediate_values[s], s))
    return t.intermediate_values[step], step


def trials_table(trials: list[FrozenTrial]) -> Table:
    names = list(dict.fromkeys(k for t in trials for k in t.params))
    table = Table(["number", "state", "val_eer", "best_epoch", "epochs_run", "param_count", "seconds",
                   "estimate_s", "device", *names, "reason"])
    for t in trials:
        value, epoch = best_reached(t)
        r = TrialRecord.of(t)
        seconds = r.seconds if r.seconds is not None else trial_duration(t)
        table.rows.append([t.number, t.state.name, value, epoch, epoch_of(t), r.param_count, seconds,
                           r.estimate.get("seconds"), r.device,
                           *(t.params.get(k) for k in names), r.reason])
    return table


def roc_figure(labels: np.ndarray, scores: np.ndarray, title: str) -> go.Figure:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fig = go.Figure([go.Scatter(x=fpr, y=tpr, mode="lines", name="ROC"),
                     go.Scatter(x=[0, 1], y=[1, 0], mode="lines", name="EER line (FNR = FPR)",
                                line={"dash": "dot", "color": "gray"})])
    fig.update_layout(title=title, xaxis_title="false positive rate", yaxis_title="true positive rate",
                      xaxis_range=[0, 1], yaxis_range=[0, 1])
    return fig


def det_figure(labels: np.ndarray, scores: np.ndarray, title: str) -> go.Figure:
    """Miss rate against false-alarm rate on normal-deviate axes, where Gaussian scores give straight lines."""
    from scipy.stats import norm
    from sklearn.metrics import det_curve

    fpr, fnr, _ = det_curve(labels, scores)

    def deviate(p: Any) -> np.ndarray:
        return norm.ppf(np.clip(p, DET_CLIP, 1 - DET_CLIP))

    ticks = {"tickvals": deviate(np.array(DET_TICKS)), "ticktext": [f"{100 * p:g}%" for p in DET_TICKS]}
    edge = deviate(np.array([DET_CLIP, 1 - DET_CLIP]))
    fig = go.Figure([go.Scatter(x=deviate(fpr), y=deviate(fnr), mode="lines", name="DET"),
                     go.Scatter(x=edge, y=edge, mode="lines", name="EER line (FNR = FPR)",
                                line={"dash": "dot", "color": "gray"})])
    fig.update_layout(title=title, xaxis={"title": "false positive rate", **ticks},
                      yaxis={"title": "false negative rate", **ticks})
    return fig


# ---------------------------------------------------------------- page

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.2em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.note{color:#666;font-style:italic}
.wide{overflow-x:auto}nav a{margin-right:1em}h2{border-bottom:1px solid #ddd;margin-top:2em}"""


def _header(ctx: Context) -> str:
    s = ctx.study
    parts = [f"<h1>Study {html.escape(s.study_name)}</h1>"]
    if description := s.user_attrs.get(DESCRIPTION):
        parts.append(f"<p>{html.escape(description)}</p>")
    if ctx.trials:
        tally = ", ".join(f"{n} {state}" for state, n in counts(ctx.trials).items() if n)
        parts.append(f"<p>{len(ctx.trials)} trials: {tally}</p>")
    else:
        parts.append('<p class="note">No trials yet.</p>')
    best = best_trial(s)
    if best is None:
        parts.append('<p class="note">No complete trial yet: no best trial.</p>')
    else:
        count = TrialRecord.of(best).param_count
        parts.append(f"<p><b>Best trial {best.number}</b>: val EER {best.value:.2f}%"
                     + (f", {count:,} parameters" if count else "") + "</p>")
        params = Table(["parameter", "value"], [[k, v] for k, v in best.params.items()])
        parts.append(params.html() if best.params else "")
    if retrained := s.user_attrs.get(RETRAIN):
        parts.append(f"<p>Retrained trial {retrained.get('trial')}: val EER {retrained.get('val_eer', math.nan):.2f}%, "
                     f"model {html.escape(str(retrained.get('best_pt', '')))}</p>")
    nav = "".join(f'<a href="#{key}">{html.escape(title)}</a>' for key, title, _ in SECTIONS)
    return "\n".join(parts) + f"\n<nav>{nav}</nav>"


def write_report(study: optuna.Study, out: Path) -> Path:
    """Write ``out/report.html`` with its figures and tables beside it; return the page's path."""
    out = Path(out)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    ctx = Context(study)

    record = trials_table(ctx.trials)
    record.write_csv(out / "trials.csv")
    (out / "trials.md").write_text(f"# Trials of study {study.study_name}\n\n" + record.markdown())
    for key in ("model", "loss"):
        eer_table(ctx.complete, key, key).write_csv(out / f"eer_by_{key}.csv")

    body, library_inlined = [_header(ctx)], False
    for key, title, build in SECTIONS:
        body.append(f'<h2 id="{key}">{html.escape(title)}</h2>')
        try:
            parts = build(ctx)
        except Skip as e:
            body.append(f'<p class="note">{html.escape(str(e))}</p>')
            continue
        for part in parts:
            if isinstance(part, str):
                body.append(part)
                continue
            part.figure.write_html(figures / f"{part.name}.html", include_plotlyjs="directory")
            body.append(part.figure.to_html(full_html=False, include_plotlyjs=not library_inlined,
                                            div_id=f"fig-{part.name}"))
            library_inlined = True

    page = out / "report.html"
    tmp = page.with_suffix(".tmp")
    tmp.write_text(f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>facesearch report: "
                   f"{html.escape(study.study_name)}</title><style>{CSS}</style></head><body>\n"
                   + "\n".join(body) + "\n</body></html>\n")
    tmp.replace(page)   # a reader never sees half a page
    return page
