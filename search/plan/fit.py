"""Fitting a plan to its GPU-hours while keeping every phase meaningful (the rule the README states).

1. The finishing steps (retrain the winner, fine-tune if asked) are priced and reserved first, with
   what calibration spent; the phases share the rest. A retrain that would repeat the winner's run costs only
   its setup (``finish.reuse``: it starts from the winner's checkpoints).
2. Shares follow the weights (water-filling): a phase that needs less than its weighted share takes only
   what it needs and the others split the rest by weight.
3. A phase over its share is cut, in this order, until it fits:
   a. a proxy phase (one a later phase promotes ``from: {top: k}``): its resolution (x0.8 a step, down to
      ``fit.min_resolution``) and identities (x0.75, down to ``fit.min_identities``), one notch of each in turn;
   b. its trials, never below the floor: the sampler's start-up trials (TPE, GP: ``n_startup_trials``), the
      top-k of the promotion that reads it, and 2 for a promotion itself;
   c. its epochs, never below ``fit.min_epochs`` of them (and the median pruner's warm-up + 1) — but only
      once every proxy phase is at its lowest fidelity: a proxy's resolution and identities go before a
      full phase's epochs.
4. A phase at all its floors keeps that cost and the others are shared again; when the floors alone do not
   fit, the plan is refused with the hours it needs at the least.
5. What whole steps left over goes back, an epoch (else a trial) at a time, to the cut phases, heaviest weight
   first, while the plan fits; then a cut proxy's fidelity, a notch at a time.
6. A budget with room to spare grows the phases at their written epochs: one trial at a time to the phase with
   the fewest seconds per weight, while the plan fits, up to the phase's ``max_trials`` (else ``fit.max_growth``
   x its written trials). A promotion (``from: {top: k}``) runs its k and a grid sampler its grid: never grown.
   After each phase the re-plan counts what it measured and fits what remains again, so hours a phase left
   unspent grow the phases after it, and an overrun is taken from them.
7. A phase that may grow is bounded by its hours, not its count: it runs up to its most trials until its share
   is spent (trials faster than their estimate buy more of them, also in the last phase). Any other phase runs
   its trials under its share plus what the phases after it grew: a trial longer than its estimate is not
   refused while the re-plan can take it back from that growth.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from facenet.config import TrainConfig

from ..cost.datasize import DataSizeError
from facenet.units import fmt_hours

from ..cost.plan import Phase, PlanOverBudget, Pricer
from .schema import FitRules, PhaseEntry, PlanSpec

RES_STEP, ID_STEP = 0.8, 0.75     # one notch of a proxy's fidelity
STARTUP = {"tpe": 10, "gp": 10}   # optuna's default n_startup_trials of the samplers that have one


@dataclass
class PhaseFit:
    """One phase's knobs in the fit, priced with ``pricer`` at the current fidelity."""

    entry: PhaseEntry
    phase: Phase                        # cost.plan's priced phase (trials, epoch_scale, points)
    configs: list[TrainConfig]          # drawn at the spec's own fidelity
    wanted_trials: int
    proxy_for: int = 0                  # the top-k of the promotion that reads this phase (0: not a proxy)
    resolution: int | None = None       # fitted fidelity (None: the spec's)
    identities: int | None = None
    pace: float = 1.0                   # measured / estimated seconds of the phases run so far
    share_s: float = 0.0
    cap_s: float | None = None          # the hours it runs under (rule 7)
    limit: int | None = None            # the trials it may run (rule 7; None: its fitted trials)
    stuck: bool = False                 # at all its floors and still over its share
    done: dict[str, Any] | None = None  # a phase that ran: its state row (measured spend, trials)

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def spec(self):
        return self.phase.spec

    def cost(self) -> float:
        return self.done["spent_s"] if self.done else self.phase.seconds()

    # ---------------------------------------------------------------- floors
    def min_trials(self) -> int:
        sampler = self.spec.sampler
        startup = sampler.get("n_startup_trials", STARTUP.get(sampler["name"], 1))
        floor = max(1, startup or 1, self.proxy_for)
        if self.spec.from_ is not None and self.spec.from_.top:
            floor = 2
        return min(self.wanted_trials, floor)

    def base_epochs(self) -> int | None:
        """The spec's epochs, or None when they are searched (no epoch cut then)."""
        if "epochs" in self.spec.space:
            return None
        return self.configs[0].epochs

    def max_trials(self, rules: FitRules) -> int:
        """What growing may reach: the plan's ``max_trials`` for it, else ``max_growth`` x its written trials."""
        if (self.spec.from_ is not None and self.spec.from_.top) or self.spec.sampler["name"] == "grid":
            return self.wanted_trials
        most = self.entry.max_trials or math.floor(self.wanted_trials * rules.max_growth)
        return max(self.wanted_trials, most)

    def growth_s(self) -> float:
        """Seconds its trials grew past the written ones (what an earlier phase's overrun may take back)."""
        return max(0, self.phase.trials - self.wanted_trials) * self.phase.trial_seconds()

    def min_epochs(self, rules: FitRules) -> int:
        base = self.base_epochs() or 1
        pruner = self.spec.pruner
        warmup = pruner.get("n_warmup_steps", 0) + 1 if pruner["name"] in ("median", "percentile") else 1
        return min(base, max(1, math.ceil(base * rules.min_epochs), warmup))

    def epochs(self) -> int | None:
        base = self.base_epochs()
        return None if base is None else max(1, math.floor(base * self.phase.epoch_scale))

    # ---------------------------------------------------------------- fidelity
    def notches(self, rules: FitRules, pricer: Pricer) -> list[tuple[int | None, int | None]]:
        """The proxy's fidelities below the current one, one notch at a time (resolution, then identities)."""
        if not self.proxy_for:
            return []
        first = self.configs[0]
        res = None if "resolution" in self.spec.space else (self.resolution or first.resolution)
        ids = None
        if "max_identities" not in self.spec.space:
            ids = self.identities or first.max_identities or self._all_identities(pricer)
        out = []
        for turn in range(200):
            if turn % 2 == 0 and res is not None and res > rules.min_resolution:
                res = max(rules.min_resolution, int(round(res * RES_STEP / 8) * 8))
            elif turn % 2 == 1 and ids is not None and ids > rules.min_identities:
                ids = max(rules.min_identities, int(ids * ID_STEP))
            elif (res is None or res <= rules.min_resolution) and (ids is None or ids <= rules.min_identities):
                break
            else:
                continue
            out.append((res, ids))
        return out

    def _all_identities(self, pricer: Pricer) -> int | None:
        try:
            return len(pricer.sizes.train(self.configs[0].train_path).counts)
        except DataSizeError:
            return None

    def set_fidelity(self, pricer: Pricer, resolution: int | None, identities: int | None) -> None:
        self.resolution, self.identities = resolution, identities
        changes = {k: v for k, v in (("resolution", resolution), ("max_identities", identities)) if v is not None}
        self.phase.drawn = [c.replace(**changes) for c in self.configs]
        self.reprice(pricer)

    def reprice(self, pricer: Pricer) -> None:
        points = [pricer.price(c, self.spec.param_cap) for c in self.phase.drawn]
        self.phase.points = [dataclasses.replace(p, setup_s=p.setup_s * self.pace, epoch_s=p.epoch_s * self.pace)
                             for p in points]

    # ---------------------------------------------------------------- what the runner applies
    def overrides(self) -> dict[str, Any]:
        """The fitted knobs as spec changes (``state.fitted_raw`` writes them into the phase's YAML)."""
        cap = self.share_s if self.cap_s is None else self.cap_s
        out: dict[str, Any] = {"n_trials": self.limit or self.phase.trials, "trials": self.phase.trials,
                               "hours": round(cap / 3600, 6)}
        base = self.base_epochs()
        if base is not None and self.epochs() != base:
            out["epochs"] = self.epochs()
        if self.resolution is not None:
            out["resolution"] = self.resolution
        if self.identities is not None:
            out["max_identities"] = self.identities
        return out

    def changes(self) -> list[str]:
        lines = []
        if self.phase.trials != self.wanted_trials:
            grown = " (grown into the budget's room)" if self.phase.trials > self.wanted_trials else ""
            lines.append(f"trials {self.wanted_trials} -> {self.phase.trials}{grown}")
        if self.resolution is not None and self.resolution != self.configs[0].resolution:
            lines.append(f"resolution {self.configs[0].resolution} -> {self.resolution}")
        if self.identities is not None and self.identities != self.configs[0].max_identities:
            lines.append(f"identities {self.configs[0].max_identities or 'all'} -> {self.identities}")
        if self.base_epochs() is not None and self.epochs() != self.base_epochs():
            lines.append(f"epochs {self.base_epochs()} -> {self.epochs()}")
        return lines


class OverBudgetFit(PlanOverBudget):
    """``PlanOverBudget`` that carries the plan at its floors, to show it."""

    def __init__(self, fit: "PlanFit", message: str):
        super().__init__(message)
        self.fit = fit


@dataclass
class PlanFit:
    fits: list[PhaseFit]
    hours: float
    reserve_s: float                     # the finishing steps
    calibration_s: float = 0.0
    finish_steps: str = "retrain"

    @property
    def budget_s(self) -> float:
        return self.hours * 3600 - self.reserve_s - self.calibration_s

    def total_s(self) -> float:
        return sum(f.cost() for f in self.fits) + self.reserve_s + self.calibration_s

    def changes(self) -> list[str]:
        return [f"{f.name}: {line}" for f in self.fits if not f.done for line in f.changes()]


# ------------------------------------------------------------------ building the fit
def phase_fits(plan: PlanSpec, phases: list[Phase]) -> list[PhaseFit]:
    """The priced phases as fit rows, in the plan's order, each knowing the promotion that reads it."""
    by_name = {p.name: p for p in phases}
    fits = [PhaseFit(e, by_name[e.name], list(by_name[e.name].drawn), by_name[e.name].trials) for e in plan.phases]
    for f in fits:
        reader = next((g for g in fits if g.spec.from_ and g.spec.from_.study == f.name and g.spec.from_.top), None)
        f.proxy_for = reader.spec.from_.top if reader else 0
    return fits


def finish_seconds(plan: PlanSpec, fits: list[PhaseFit], pricer: Pricer) -> float:
    """The finishing steps' cost, priced at the mean of the winner's phase's points: the winner retrained (at
    ``finish.epochs``, else its phase's), nothing but its setup when that retrain repeats the phase's run and
    ``finish.reuse`` holds (``repeats_trial``: the winner's checkpoints are used); one epoch more for the export
    and the test list; then the fine-tuning on ``finish.finetune_on`` when asked."""
    from pathlib import Path

    from ..finish.retrain import repeats_trial, retrain_config

    f = next(g for g in fits if g.name == plan.finish_study)
    epochs = f.epochs() or f.configs[0].epochs
    costs = []
    for config in f.phase.drawn:
        point = pricer.price(config, f.spec.param_cap)
        if not point.trains:
            continue
        trial = config.replace(epochs=epochs)
        again = retrain_config(trial, plan.finish.epochs)
        trained = 0 if plan.finish.reuse and repeats_trial(trial, again) else again.epochs
        total = point.setup_s + (trained + 1) * point.epoch_s   # + 1: exporting and scoring the test list
        if plan.finish.finetune_on:
            tuned = again.replace(train_path=str(Path(config.train_path).parent / plan.finish.finetune_on),
                                  epochs=plan.finish.finetune_epochs or again.epochs, initial_model="")
            fine = pricer.price(tuned, f.spec.param_cap)
            total += fine.setup_s + tuned.epochs * fine.epoch_s
        costs.append(total)
    return f.pace * sum(costs) / len(costs) if costs else 0.0


def _waterfill(fits: list[PhaseFit], budget: float) -> None:
    """Shares by weight; a phase needing less than its share takes what it needs (also a stuck or run one)."""
    fixed = [f for f in fits if f.done or f.stuck]
    for f in fixed:
        f.share_s = f.cost()
    free = budget - sum(f.cost() for f in fixed)
    open_ = [f for f in fits if f not in fixed]
    while open_:
        weight = sum(f.entry.weight for f in open_)
        small = [f for f in open_ if f.cost() <= free * f.entry.weight / weight]
        if not small:
            for f in open_:
                f.share_s = max(free, 0.0) * f.entry.weight / weight
            return
        for f in small:
            f.share_s = f.cost()
            free -= f.cost()
            open_.remove(f)
    # every phase fits: the slack goes to them by weight (a phase may use it when its trials run long)
    live = [f for f in fits if not f.done]
    weight = sum(f.entry.weight for f in live) or 1.0
    for f in live:
        f.share_s += max(free, 0.0) * f.entry.weight / weight


def fit_plan(plan: PlanSpec, fits: list[PhaseFit], pricer: Pricer, hours: float, reserve_s: float,
             calibration_s: float = 0.0) -> PlanFit:
    """Cut the phases not yet run until the plan fits ``hours`` (see the module's rule); raises
    ``PlanOverBudget`` (one line) when even every floor does not fit."""
    steps = "retrain" + (" + fine-tune" if plan.finish.finetune_on else "")
    out = PlanFit(fits, hours, reserve_s, calibration_s, steps)
    rules, budget, eps = plan.fit, out.budget_s, 1e-6
    proxies = [f for f in fits if f.proxy_for and not f.done]
    notch_at = {f.name: 0 for f in proxies}
    ladders = {f.name: f.notches(rules, pricer) for f in proxies}

    def notch(f: PhaseFit) -> bool:
        if notch_at[f.name] >= len(ladders[f.name]):
            return False
        f.set_fidelity(pricer, *ladders[f.name][notch_at[f.name]])
        notch_at[f.name] += 1
        return True

    for _ in range(10_000):
        _waterfill(fits, budget)
        over = [f for f in fits if not f.done and not f.stuck and f.cost() > f.share_s + eps]
        if not over:
            break
        if any([notch(f) for f in over if f.proxy_for]):      # a. an over-share proxy's fidelity
            continue
        if any([_cut_trials(f) for f in over]):                 # b. trials, to the floor
            continue
        if any([notch(f) for f in proxies]):                    # every proxy's fidelity before ...
            continue
        if any([_cut_epochs(f, rules) for f in over]):          # c. ... a phase's epochs
            continue
        for f in over:
            f.stuck = True
        if all(f.stuck or f.done for f in fits) and sum(f.cost() for f in fits) > budget + eps:
            break
    _grow(fits, budget)
    for f in proxies:   # then a cut proxy's fidelity, a notch at a time, while the plan fits
        while notch_at[f.name]:
            notch_at[f.name] -= 1
            back = ladders[f.name][notch_at[f.name] - 1] if notch_at[f.name] else (None, None)
            before = (f.resolution, f.identities)
            f.set_fidelity(pricer, *back)
            if sum(g.cost() for g in fits) > budget + eps:
                f.set_fidelity(pricer, *before)
                notch_at[f.name] += 1
                break
    _grow_trials(fits, budget, rules)
    _waterfill(fits, budget)
    for i, f in enumerate(fits):
        if f.max_trials(rules) > f.wanted_trials:   # may grow: its hours bound it
            f.limit, f.cap_s = f.max_trials(rules), f.share_s
        else:
            f.cap_s = f.share_s + sum(g.growth_s() for g in fits[i + 1:] if not g.done and not g.stuck)
    need = out.total_s()
    if need > hours * 3600 + eps:
        raise OverBudgetFit(out, f"even at every phase's floor (fewest trials, lowest proxy fidelity, fewest epochs) "
                             f"the plan needs {fmt_hours(need)} GPU-hours, over the {hours:g}-hour budget; give "
                             f"more hours, drop phases, or lower the fit floors")
    return out


def _grow(fits: list[PhaseFit], budget: float) -> None:
    """Hand back what whole-step cuts left over: one more epoch, else one more trial, to the cut phases by weight
    (heaviest first) while the plan still fits (a cut proxy's fidelity comes back after these, in ``fit_plan``)."""
    def total() -> float:
        return sum(f.cost() for f in fits)

    grown = True
    while grown:
        grown = False
        for f in sorted((f for f in fits if not f.done and not f.stuck), key=lambda f: -f.entry.weight):
            base, scale, trials = f.base_epochs(), f.phase.epoch_scale, f.phase.trials
            if base and f.epochs() < base:
                f.phase.epoch_scale = (f.epochs() + 1 + 1e-9) / base
            elif trials < f.wanted_trials:
                f.phase.trials = trials + 1
            else:
                continue
            if total() <= budget:
                grown = True
            else:
                f.phase.epoch_scale, f.phase.trials = scale, trials


def _grow_trials(fits: list[PhaseFit], budget: float, rules: FitRules) -> None:
    """Spend the room left: one trial at a time to the growable phase with the fewest seconds per weight, while
    the plan fits; a phase whose next trial does not fit stops growing (a cheaper one may still)."""
    total = sum(f.cost() for f in fits)
    open_ = [f for f in fits if not f.done and not f.stuck and f.phase.trial_seconds() > 0
             and (f.base_epochs() is None or f.epochs() >= f.base_epochs()) and f.phase.trials < f.max_trials(rules)]
    while open_:
        f = min(open_, key=lambda g: g.cost() / g.entry.weight)
        each = f.phase.trial_seconds()
        if total + each > budget:
            open_.remove(f)
            continue
        f.phase.trials += 1
        total += each
        if f.phase.trials >= f.max_trials(rules):
            open_.remove(f)


def _cut_trials(f: PhaseFit) -> bool:
    each = f.phase.trial_seconds()
    if each <= 0 or f.phase.trials <= f.min_trials():
        return False
    f.phase.trials = max(f.min_trials(), min(f.phase.trials - 1, math.floor(f.share_s / each)))
    return True


def _cut_epochs(f: PhaseFit, rules: FitRules) -> bool:
    base = f.base_epochs()
    if base is None or f.epochs() <= f.min_epochs(rules):
        return False
    lowest = f.min_epochs(rules)
    target = lowest
    for e in range(f.epochs() - 1, lowest - 1, -1):   # the most epochs that fit the share
        f.phase.epoch_scale = (e + 1e-9) / base
        if f.cost() <= f.share_s:
            target = e
            break
    f.phase.epoch_scale = (target + 1e-9) / base
    return True
