"""The study report: one self-contained HTML page plus the files it is built from.

``out/report.html``        header (study, description, trial counts, best trial with its 95 % interval),
                           the top trials and which are within noise of the best, Optuna's figures,
                           EER by every categorical choice (best and median with intervals, and which
                           choices cannot be told apart), ROC and DET of the retrained best run, the
                           experiment record of every trial; plotly.js inline once, no network
``out/figures/NAME.html``  each figure on its own page (sharing ``figures/plotly.min.js``)
``out/figures/NAME.png``   each figure as a static image (matplotlib)
``out/trials.csv|md``      the experiment record: one row per trial
``out/eer_by_KEY.csv``     EER by model, loss, ... (numbers in columns of their own)

A section that cannot be drawn for this study (too few trials, no retrained run) is
replaced by a note saying why, so the page is written for any study, even an empty one.
For a pruned or failed trial, ``val_eer`` and ``best_epoch`` are the best epoch it reached
before it was stopped (a complete trial's value is the same minimum over its epochs).
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import optuna
from optuna.trial import TrialState

from ..record import DESCRIPTION, METRIC as TARGET, TrialRecord, best_trial, retrain_record, stored_spec
from .choices import ByChoice, by_choice, choice_keys
from .figures import Fig, optuna_fig, roc_det_figs
from .noise import Ranked, eer_text, methods_used, rank_top, retrain_text
from .page import Page, Part, Skip
from .proxy import proxy_pairs, spearman
from .trials import counts
from .tables import Table, trials_table

TOP = 5    # trials in the "within noise" table


class Context:
    """The study read once; what several sections share is computed lazily, once."""

    def __init__(self, study: optuna.Study):
        self.study = study
        self.trials = study.get_trials(deepcopy=False)
        self.complete = [t for t in self.trials if t.state == TrialState.COMPLETE and t.value is not None]
        self._importances: dict[str, float] | Skip | None = None
        self._choices: dict[str, ByChoice] | None = None
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

    def choices(self) -> dict[str, ByChoice]:
        """EER by every categorical choice with complete trials (the plan's keys first)."""
        if self._choices is None:
            found = {key: by_choice(self.complete, key) for key in choice_keys(self.trials)}
            self._choices = {key: c for key, c in found.items() if c.rows}
        return self._choices


# ---------------------------------------------------------------- sections

def _history(ctx: Context) -> list[Part]:
    ctx.need_complete()
    return [optuna_fig("history", "plot_optimization_history", ctx.study, target_name=TARGET)]


def _importance(ctx: Context) -> list[Part]:
    ctx.importances()
    return [importance_fig(ctx, "importances")]


def importance_fig(ctx: Context, name: str) -> Fig:
    """fANOVA importances over the varying parameters (``ctx.importances()`` must have run)."""
    from optuna.visualization import matplotlib as static, plot_param_importances

    def kw():   # a fresh seeded evaluator per drawing: both figures show the same numbers
        return {"evaluator": ctx.evaluator(), "params": ctx.varying, "target_name": TARGET}
    return Fig(name, plot_param_importances(ctx.study, **kw()),
               lambda: static.plot_param_importances(ctx.study, **kw()))


def _top(ctx: Context) -> list[Part]:
    ctx.need_complete()
    ranked = rank_top(ctx.trials, TOP)
    how = methods_used([r.gap for r in ranked[1:]])
    command = f"facesearch retrain {ctx.study.study_name} --within-noise"
    return [top_table(ranked).html(), f"<p>Comparisons: {html.escape(how)}. This val list does not show a "
            f"trial within noise of the best to be worse; retrain them all with <code>{html.escape(command)}"
            "</code>.</p>"]


def _intermediate(ctx: Context) -> list[Part]:
    if not any(t.intermediate_values for t in ctx.trials):
        raise Skip("no trial has reported a per-epoch val EER yet")
    return ["<p>Val EER per epoch of every trained trial; pruned trials stop early.</p>",
            optuna_fig("intermediate", "plot_intermediate_values", ctx.study)]


def _parallel(ctx: Context) -> list[Part]:
    ctx.need_complete()
    return [optuna_fig("parallel", "plot_parallel_coordinate", ctx.study, target_name=TARGET)]


def _slice(ctx: Context) -> list[Part]:
    ctx.need_complete()
    return [optuna_fig("slice", "plot_slice", ctx.study, target_name=TARGET)]


def _contours(ctx: Context) -> list[Part]:
    ranked = list(ctx.importances())
    if len(ranked) < 2:
        raise Skip(f"needs two varying parameters; this study varies only {', '.join(ranked)}")
    pairs = [(ranked[0], other) for other in ranked[1:3]]   # the top pair, and the top with the third
    return [optuna_fig(f"contour-{i}", "plot_contour", ctx.study, params=list(p), target_name=TARGET)
            for i, p in enumerate(pairs, 1)]


def _choices(ctx: Context) -> list[Part]:
    ctx.need_complete()
    parts, fixed = ["<p>Complete trials only. Best: the choice's best trial with its 95% interval (identity "
                    "bootstrap of the val list). Median: over the choice's trials, its interval resampling "
                    "both the trials and the val identities. The verdict compares the best trials.</p>"], []
    for key, choice in ctx.choices().items():
        if choice.varies:
            parts.append(f'<h3 id="eer-{key}">EER by {html.escape(choice.label)}</h3>' + choice.html())
        else:
            fixed.append(f"{choice.label} {choice.rows[0].choice}")
    if fixed:
        same = html.escape(", ".join(fixed))
        parts.append(f'<p class="fixed">The same in every complete trial: {same}.</p>')
    return parts


def _roc_det(ctx: Context) -> list[Part]:
    record = retrain_record(ctx.study)
    roc = record.roc if record else None
    if not roc:
        raise Skip("no retrained run with val scores is recorded on this study; run `facesearch retrain` first")
    labels, scores = np.asarray(roc["labels"], dtype=int), np.asarray(roc["scores"], dtype=float)
    if len(set(labels.tolist())) < 2:
        raise Skip("the recorded val pairs hold only one label; ROC needs same and different pairs")
    title = f"trial {record.trial} retrained: val EER {retrain_text(record)} over {len(labels)} pairs"
    return [f"<p>{html.escape(title)}; run {html.escape(str(record.run_dir))}</p>",
            *roc_det_figs(labels, scores, title)]


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
    return ['<p>Also as <a href="trials.csv">trials.csv</a> and <a href="trials.md">trials.md</a>; '
            "val_eer_low/high: its 95% interval.</p>",
            '<div class="wide">' + trials_table(ctx.trials).html() + "</div>"]


def _spec(ctx: Context) -> list[Part]:
    spec = stored_spec(ctx.study)
    if not spec:
        raise Skip("the study holds no facesearch spec (created outside facesearch?)")
    text = json.dumps(spec, indent=2)
    return [f"<details><summary>study spec</summary><pre>{html.escape(text)}</pre></details>"]


SECTIONS: list[tuple[str, str, Callable[[Context], list[Part]]]] = [
    ("top", "Top trials: which are within noise of the best", _top),
    ("history", "Optimisation history", _history),
    ("importances", "Parameter importances", _importance),
    ("intermediate", "Intermediate values (pruning)", _intermediate),
    ("rungs", "Rungs (successive halving, Hyperband)", _rungs),
    ("parallel", "Parallel coordinates", _parallel),
    ("slice", "Slices", _slice),
    ("contours", "Contours of the most important parameters", _contours),
    ("eer-by-choice", "EER by choice (architecture, loss, optimizer, ...)", _choices),
    ("roc-det", "ROC and DET of the best run", _roc_det),
    ("proxy", "Proxy vs full fidelity", _proxy),
    ("trials", "Trials", _trials),
    ("spec", "Study spec", _spec),
]


# ---------------------------------------------------------------- tables

def top_table(ranked: list[Ranked]) -> Table:
    """The top trials with intervals and their gap to the best (``noise.rank_top``)."""
    table = Table(["rank", "trial", "val EER [95% CI]", "vs best (points)", "P(best is better)", "comparison",
                   "verdict"])
    for r in ranked:
        g = r.gap
        table.rows.append([r.rank + 1, r.trial.number, eer_text(r.trial), g.gap_text() if g else "",
                           "" if g is None or g.p_b_better is None else f"{g.p_b_better:.2f}",
                           g.method if g else "", r.verdict])
    return table


# ---------------------------------------------------------------- page

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
        parts.append(f"<p><b>Best trial {best.number}</b>: val EER {eer_text(best)}"
                     + (f", {count:,} parameters" if count else "")
                     + " (95% interval: identity bootstrap of the val list)</p>")
        params = Table(["parameter", "value"], [[k, v] for k, v in best.params.items()])
        parts.append(params.html() if best.params else "")
    if retrained := retrain_record(s):
        parts.append(f"<p>Retrained trial {retrained.trial}: val EER {retrain_text(retrained)}, "
                     f"model {html.escape(str(retrained.best_pt))}</p>")
    nav = "".join(f'<a href="#{key}">{html.escape(title)}</a>' for key, title, _ in SECTIONS)
    return "\n".join(parts) + f"\n<nav>{nav}</nav>"


def write_report(study: optuna.Study, out: Path) -> Path:
    """Write ``out/report.html`` with its figures and tables beside it; return the page's path."""
    page = Page(out)
    ctx = Context(study)
    record = trials_table(ctx.trials)
    record.write_csv(page.out / "trials.csv")
    (page.out / "trials.md").write_text(f"# Trials of study {study.study_name}\n\n" + record.markdown())
    for key in dict.fromkeys(["model", "loss", *ctx.choices()]):   # model and loss: always, as before
        choice = ctx.choices().get(key) or ByChoice(key, [])
        choice.csv_table().write_csv(page.out / f"eer_by_{key}.csv")

    page.add(_header(ctx))
    for key, title, build in SECTIONS:
        page.section(key, title, lambda: build(ctx))
    return page.write("report.html", f"facesearch report: {study.study_name}")
