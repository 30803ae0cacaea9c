"""``facesearch report --all``: every study of a storage on one page, answering the plan's questions.

``out/analysis.html``          the studies; which loss works best; learning rate and scheduler;
                               augmentation; train1 vs train2 vs pre-train then fine-tune; architecture;
                               interactions (Optuna's importance evaluators, contours); the experiment record
``out/figures/NAME.html|png``  every figure on its own page (sharing ``figures/plotly.min.js``) and as PNG
``out/experiments.csv|md``     the plan's experiment record, one row per trial and per retrained model

Choices are compared *within* a study: there the sampler draws the other settings the same way for
every choice, while two studies differ in what they fix. Training data is the exception: phases
on train1, train2 and fine-tuning are separate studies, so that table pools them (same val list:
paired comparisons still hold).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial

from ..record import DESCRIPTION, METRIC as TARGET, RETRAINED_FROM, TrialRecord
from ..storage import redact, storage_url
from .choices import by_choice
from .experiments import regime, retrained_trials, write_experiments
from .figures import optuna_fig, size_figure
from .noise import eer_text, interval_of, rank_top, within_noise_of_best
from .page import Page, Part, Skip, slug
from .report import Context, importance_fig
from .tables import Table

IMPORTANCE_EVALUATORS = {   # Optuna's evaluators, seeded: the page is the same every time it is written
    "fANOVA": lambda: optuna.importance.FanovaImportanceEvaluator(seed=0),
    "mean decrease impurity": lambda: optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0),
    "PED-ANOVA": lambda: optuna.importance.PedAnovaImportanceEvaluator(),
}
ARCHITECTURE_KEYS = ("model", "width", "depth", "block", "n_out")
SCHEDULE_KEYS = ("lr", "warmup_epochs", "lr_decay", "step_size", "t_max", "eta_min")


class Storage:
    """Every study of one storage, read once."""

    def __init__(self, storage: optuna.storages.BaseStorage, url: str | None = None):
        self.url = url
        # in creation order: the plan's phases in turn; a name no spec can take (':') holds facesearch's own
        # state, no trials (a plan's progress: its own section, given by the caller)
        names = [n for n in optuna.get_all_study_names(storage) if ":" not in n]
        self.studies = [optuna.load_study(study_name=n, storage=storage) for n in names]
        self.contexts = [Context(s) for s in self.studies]
        self.names: dict[int, str] = {}    # trial id -> "study#number", for tables over several studies
        for s in self.studies:
            self.names.update({t._trial_id: f"{s.study_name}#{t.number}"
                               for t in s.get_trials(deepcopy=False)})

    def name_of(self, t: FrozenTrial) -> str:
        return self.names.get(t._trial_id, f"retrain of {t.user_attrs.get(RETRAINED_FROM, '?')}")


# ---------------------------------------------------------------- sections
def _studies(db: Storage) -> list[Part]:
    if not db.studies:
        raise Skip("the storage holds no study yet")
    table = Table(["study", "description", "trials", "complete", "best trial", "best val EER [95% CI]",
                   "within noise of the best (top 5)", "retrained"])
    for ctx in db.contexts:
        ranked = rank_top(ctx.trials, 5)
        retrained = [f"{eer_text(t)} (trial {t.user_attrs[RETRAINED_FROM]})"
                     for t in retrained_trials(ctx.study)]
        tied = ", ".join(str(t.number) for t in within_noise_of_best(ranked))
        table.rows.append([ctx.study.study_name, ctx.study.user_attrs.get(DESCRIPTION, ""), len(ctx.trials),
                           len(ctx.complete), ranked[0].trial.number if ranked else "",
                           eer_text(ranked[0].trial) if ranked else "", tied, "; ".join(retrained)])
    return [table.html()]


def _choices_in_studies(db: Storage, keys: Sequence[str]) -> list[Part]:
    """EER by each of ``keys`` in every study that varies it."""
    parts = []
    for ctx in db.contexts:
        for key, choice in ((k, by_choice(ctx.complete, k)) for k in keys):
            if choice.varies:
                where = html.escape(ctx.study.study_name)
                parts.append(f"<h3>{html.escape(choice.label)} in study {where}</h3>" + choice.html())
    return parts


def _questions(keys: Sequence[str], what: str) -> Callable[[Storage], list[Part]]:
    def section(db: Storage) -> list[Part]:
        parts = _choices_in_studies(db, keys)
        if not parts:
            raise Skip(f"no study varied the {what} over complete trials; run the phase that searches it")
        return parts
    return section


def _schedule(db: Storage) -> list[Part]:
    parts = _choices_in_studies(db, ("scheduler",))
    for ctx in db.contexts:
        varying = [k for k in SCHEDULE_KEYS
                   if len({repr(t.params[k]) for t in ctx.complete if k in t.params}) > 1]
        if not varying or len(ctx.complete) < 2:
            continue
        name = ctx.study.study_name
        try:
            rank = list(ctx.importances())
            said = "; ".join(f"{k} ranks {rank.index(k) + 1} of {len(rank)} by fANOVA importance"
                             for k in varying if k in rank)
        except Skip as e:
            said = str(e)
        parts += [f"<h3>Learning rate in study {html.escape(name)}</h3><p>{html.escape(said)}.</p>",
                  optuna_fig(f"{slug(name)}-schedule-slice", "plot_slice", ctx.study, params=varying,
                             target_name=TARGET)]
    if not parts:
        raise Skip("no study varied the learning rate or the scheduler over complete trials")
    return parts


def _training_data(db: Storage) -> list[Part]:
    trials = [t for ctx in db.contexts for t in ctx.complete]
    trials += [t for s in db.studies for t in retrained_trials(s)]
    choice = by_choice(trials, "regime", lambda t: regime(TrialRecord.of(t).config), db.name_of)
    if not choice.rows:
        raise Skip("no complete trial or retrained model yet")
    return ["<p>All studies pooled, retrained models included (the phases on train1, train2 and fine-tuning "
            "are separate studies). Paired where the runs kept their val scores of the same list.</p>",
            choice.html()]


def _architecture(db: Storage) -> list[Part]:
    parts = _choices_in_studies(db, ARCHITECTURE_KEYS)
    points = []
    for ctx in db.contexts:
        for t in ctx.complete:
            r, iv = TrialRecord.of(t), interval_of(t)
            if r.param_count:
                low, high = (iv.low, iv.high) if iv else (t.value, t.value)
                points.append((str(r.config.get("model", t.params.get("model", "?"))), r.param_count, t.value,
                               low, high, f"{db.name_of(t)}: {eer_text(t)}"))
    if points:
        parts.append(size_figure("architecture-size", points, "best val EER against parameter count, every "
                                 "complete trial (bars: 95% intervals)"))
    if not parts:
        raise Skip("no complete trial recorded its parameter count yet")
    return parts


def _interactions(db: Storage) -> list[Part]:
    parts = []
    for ctx in db.contexts:
        try:
            ranked = list(ctx.importances())
        except Skip:
            continue
        name, params = ctx.study.study_name, ctx.varying
        table = Table(["parameter", *IMPORTANCE_EVALUATORS])
        scores = {}
        for label, make in IMPORTANCE_EVALUATORS.items():
            try:
                scores[label] = optuna.importance.get_param_importances(ctx.study, evaluator=make(),
                                                                        params=params)
            except Exception:   # an evaluator that cannot fit this study (e.g. too few trials for PED-ANOVA)
                scores[label] = {}
        table.rows = [[p, *(scores[label].get(p) for label in IMPORTANCE_EVALUATORS)] for p in ranked]
        parts += [f"<h3>Study {html.escape(name)}</h3><p>Importance of each varying parameter for the val "
                  "EER (each evaluator's shares sum to 1; an empty cell: that evaluator could not fit this "
                  "study).</p>", table.html(), importance_fig(ctx, f"{slug(name)}-importances")]
        if len(ranked) >= 2:
            parts.append(optuna_fig(f"{slug(name)}-contour", "plot_contour", ctx.study, params=ranked[:2],
                                    target_name=TARGET))
    if not parts:
        raise Skip("no study has two complete trials with a varying parameter")
    return parts


def _record(table: Table) -> Callable[[Storage], list[Part]]:
    def section(db: Storage) -> list[Part]:
        if not table.rows:
            raise Skip("no trial yet")
        return ['<p>Also as <a href="experiments.csv">experiments.csv</a> and '
                '<a href="experiments.md">experiments.md</a> for the written report.</p>',
                '<div class="wide">' + table.html() + "</div>"]
    return section


QUESTIONS: list[tuple[str, str, Callable[[Storage], list[Part]]]] = [
    ("studies", "Studies", _studies),
    ("loss", "Which loss works best", _questions(("loss",), "loss")),
    ("schedule", "Learning rate and scheduler", _schedule),
    ("augmentation", "Contribution of augmentation", _questions(("augment", "mixup_alpha", "cutmix_alpha"),
                                                                "augmentation")),
    ("training-data", "train1, train2, or pre-train then fine-tune", _training_data),
    ("architecture", "Effect of architecture", _architecture),
    ("interactions", "Interactions between hyperparameters", _interactions),
]


Section = tuple[str, str, Callable[[Storage], list[Part]]]   # anchor, title, its parts


def write_analysis(storage: optuna.storages.BaseStorage, out: Path, url: str | None = None,
                   first: Sequence[Section] = ()) -> Path:
    """Write ``out/analysis.html`` over every study of ``storage``, with figures and the experiment record;
    ``first``: sections shown before the studies (a plan's phases)."""
    db = Storage(storage, url)
    page = Page(out)
    table = write_experiments(db.studies, page.out)
    sections = [*first, *QUESTIONS, ("record", "Experiment record", _record(table))]
    nav = "".join(f'<a href="#{key}">{html.escape(title)}</a>' for key, title, _ in sections)
    where = html.escape(redact(storage_url(url)))
    studies = f"{len(db.studies)} stud{'y' if len(db.studies) == 1 else 'ies'}"
    page.add(f"<h1>facesearch analysis: {studies} in {where}</h1>"
             "<p>EERs are percent on the val list, with 95% intervals from an identity bootstrap (1,000 "
             "resamples). Two choices <i>cannot be told apart</i> when the interval of their best trials' "
             f"difference contains 0.</p><nav>{nav}</nav>")
    for key, title, build in sections:
        page.section(key, title, lambda build=build: build(db))
    return page.write("analysis.html", "facesearch analysis")
