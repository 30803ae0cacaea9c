"""EER by choice: for one categorical setting (loss, model, scheduler, ...), each choice's best and
median val EER with 95 % intervals, and in plain words which choices the val list cannot tell apart.

The verdict compares the choices' *best* trials (``noise.compare_to``: paired on the saved scores
when it can). The median's interval resamples both the choice's trials and the val identities, so
it also says how much the median owes to which points the sampler happened to draw.
Only complete trials count: a pruned trial stopped early and its EER is not comparable.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial

from facenet.eval.compare import EerInterval

from .noise import Gap, compare_to, complete_trials, interval_of, median_interval
from .tables import Table, config_value

# the plan's questions name these; any other categorical a study searches is added after them
CHOICE_KEYS = ("model", "loss", "optimizer", "scheduler", "augment")
LABELS = {"augment": "augmentation", "n_out": "embedding size (nOut)", "regime": "training data"}


def choice_keys(trials: Sequence[FrozenTrial]) -> list[str]:
    keys = list(CHOICE_KEYS)
    for t in trials:
        keys += [k for k, d in t.distributions.items()
                 if isinstance(d, CategoricalDistribution) and k not in keys]
    return keys


def label_of(key: str) -> str:
    return LABELS.get(key, key)


@dataclass(frozen=True)
class ChoiceRow:
    choice: str
    trials: list[FrozenTrial]               # complete, best first
    interval: EerInterval | None            # of the best trial
    median: tuple[float, float, float]      # median, low, high
    gap: Gap | None = None                  # best trial against the leading choice's best (None: the leader)

    @property
    def best(self) -> FrozenTrial:
        return self.trials[0]


@dataclass(frozen=True)
class ByChoice:
    key: str
    rows: list[ChoiceRow]                   # leader first
    name_of: Callable[[FrozenTrial], str] = field(default=lambda t: str(t.number))   # the "best trial" cell

    @property
    def label(self) -> str:
        return label_of(self.key)

    @property
    def varies(self) -> bool:
        return len(self.rows) > 1

    def table(self) -> Table:
        """For the page and Markdown: ``7.50% [5.9, 9.4]`` cells."""
        t = Table([self.label, "best val EER [95% CI]", "best trial", "median val EER [95% CI]",
                   "complete trials", "best vs leader (points)", "verdict"])
        for i, r in enumerate(self.rows):
            best = str(r.interval) if r.interval else f"{r.best.value:.2f}%"
            med, low, high = r.median
            median = f"{med:.2f}%" + (f" [{low:.1f}, {high:.1f}]" if low == low else "")
            t.rows.append([r.choice, best, self.name_of(r.best), median, len(r.trials),
                           "" if i == 0 else r.gap.gap_text() if r.gap else "?", _verdict(i, r)])
        return t

    def csv_table(self) -> Table:
        """For ``eer_by_KEY.csv``: numbers in columns of their own."""
        t = Table([self.label, "best val EER %", "best low", "best high", "best trial", "median val EER %",
                   "median low", "median high", "complete trials", "vs leader", "vs leader low",
                   "vs leader high", "comparison", "verdict"])
        for i, r in enumerate(self.rows):
            iv, g = r.interval, r.gap
            low, high = (iv.low, iv.high) if iv else (None, None)
            gap = (g.difference, g.low, g.high, g.method) if g else (None,) * 4
            t.rows.append([r.choice, r.best.value, low, high, self.name_of(r.best), *r.median, len(r.trials),
                           *gap, _verdict(i, r)])
        return t

    def verdict(self) -> str:
        """Plain sentences: which choice leads, which cannot be told from it, which are worse."""
        if not self.rows:
            return f"No complete trial: nothing to say about the {self.label}."
        lead = self.rows[0]
        if not self.varies:
            return f"Every complete trial used {self.label} {lead.choice}: there is nothing to compare."
        tied = [r for r in self.rows[1:] if r.gap and r.gap.within_noise]
        worse = [r for r in self.rows[1:] if r.gap and not r.gap.within_noise]
        unknown = [r for r in self.rows[1:] if r.gap is None]
        out = [f"{self.label.capitalize()} {lead.choice} has the lowest best val EER "
               f"({lead.interval or f'{lead.best.value:.2f}%'}, trial {self.name_of(lead.best)})."]
        if tied:
            names = _join([lead.choice] + [r.choice for r in tied])
            gaps = "; ".join(f"{r.choice} {r.gap.gap_text()} ({r.gap.method})" for r in tied)
            out.append(f"{names} cannot be told apart on this val list: the best trials' differences from "
                       f"{lead.choice}'s, in points with 95% intervals, contain 0 ({gaps}).")
        out += [f"{r.choice} is worse than {lead.choice}: its best trial is {r.gap.gap_text()} points behind "
                f"({r.gap.method})." for r in worse]
        if unknown:
            out.append(f"{_join([r.choice for r in unknown])}: no interval kept, so no verdict against "
                       f"{lead.choice}.")
        return " ".join(out)

    def html(self) -> str:
        return f"<p>{html.escape(self.verdict())}</p>" + (self.table().html() if self.rows else "")


def _verdict(i: int, r: ChoiceRow) -> str:
    if i == 0:
        return "leader"
    return "?" if r.gap is None else "within noise" if r.gap.within_noise else "worse"


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def by_choice(trials: Sequence[FrozenTrial], key: str, value_of: Callable[[FrozenTrial], Any] | None = None,
              name_of: Callable[[FrozenTrial], str] | None = None) -> ByChoice:
    """The complete trials of ``trials`` grouped by their ``key`` setting (or ``value_of(trial)``), best
    choice first; ``name_of`` names a trial in the table (trials of several studies: ``study#3``)."""
    groups: dict[str, list[FrozenTrial]] = {}
    extra = {} if name_of is None else {"name_of": name_of}
    for t in complete_trials(trials):
        value = config_value(t, key) if value_of is None else value_of(t)
        groups.setdefault("?" if value is None else str(value), []).append(t)
    ranked = sorted(groups.items(), key=lambda kv: (kv[1][0].value, kv[0]))
    if not ranked or set(groups) == {"?"}:   # no trial records this setting
        return ByChoice(key, [], **extra)
    leader = ranked[0][1][0]
    gaps = [None] + compare_to(leader, [g[0] for _, g in ranked[1:]])
    return ByChoice(key, [ChoiceRow(name, g, interval_of(g[0]), median_interval(g), gap)
                          for (name, g), gap in zip(ranked, gaps)], **extra)
