"""``facesearch plan``: what a chain of phases will cost before any of it runs.

Each phase's trials are priced at points drawn at random from what the phase can run: its own
space, plus what it takes ``from:`` earlier phases (unknown until they run, so drawn from their
spaces too). A point over the parameter cap costs nothing (it never trains); the rest cost the
calibration's estimate (``estimate.py``). Phases run one after another (``from:`` needs the earlier
one finished), each over up to N GPUs. Trials are priced as if none were pruned: an upper bound.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from facenet.config import TrainConfig
from facenet.errors import UserError

from ..spec import ParamSpec, StudySpec, load_spec, suggest
from .calibration import CalibrationError, CalibrationTable, shape_id
from .datasize import DataSizes
from .estimate import estimate

SAMPLES = 48                 # points priced per phase
optuna.logging.set_verbosity(optuna.logging.WARNING)


class PlanOverBudget(UserError):
    """The plan needs more GPU-hours than given."""


@dataclass
class Point:
    setup_s: float
    epoch_s: float
    epochs: int
    trains: bool = True          # False: over the cap, never trained
    approximate: bool = False    # priced from a nearby calibration entry

    def seconds(self, epoch_scale: float = 1.0) -> float:
        if not self.trains:
            return 0.0
        return self.setup_s + max(1, math.floor(self.epochs * epoch_scale)) * self.epoch_s


@dataclass
class Phase:
    spec: StudySpec
    trials: int
    points: list[Point] = field(default_factory=list)
    inherited: dict[str, Any] = field(default_factory=dict)  # what `from:` gives it (see chained)
    drawn: list[TrainConfig] = field(default_factory=list)   # the configs behind ``points``
    epoch_scale: float = 1.0

    @property
    def name(self) -> str:
        return self.spec.name

    def trial_seconds(self) -> float:
        return sum(p.seconds(self.epoch_scale) for p in self.points) / len(self.points)

    def seconds(self) -> float:
        return self.trials * self.trial_seconds()

    def wall_seconds(self, gpus: int) -> float:
        """Trials run ``gpus`` at a time: whole waves of the mean trial."""
        return math.ceil(self.trials / gpus) * self.trial_seconds() if self.trials else 0.0

    def epochs(self) -> str:
        values = sorted({max(1, math.floor(p.epochs * self.epoch_scale)) for p in self.points})
        return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


    def shown(self, field_name: str) -> str:
        """A config field over the drawn points: its value, or its range."""
        values = sorted({getattr(c, field_name) for c in self.drawn})
        text = ["all" if v == 0 and field_name == "max_identities" else str(v) for v in values]
        return text[0] if len(text) == 1 else f"{text[0]}-{text[-1]}"


# ------------------------------------------------------------------ phases in order, with what they inherit
def load_phases(paths: list[Path]) -> list[StudySpec]:
    """The specs in ``from:`` order; an earlier phase not given is read from beside the spec naming it."""
    specs = {s.name: s for s in (load_spec(p) for p in paths)}
    order: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in order or name not in specs:
            return
        if name in trail:
            raise PlanError(f"phases chain in a loop: {' -> '.join(trail + (name,))}")
        earlier = specs[name].from_
        if earlier is not None:
            if earlier.study not in specs:
                beside = specs[name].source.parent / f"{earlier.study}.yaml" if specs[name].source else None
                if beside is not None and beside.is_file():
                    specs[earlier.study] = load_spec(beside)
            visit(earlier.study, trail + (name,))
        order.append(name)

    for name in list(specs):
        visit(name, ())
    return [specs[n] for n in order]


class PlanError(UserError):
    """Phases that cannot be planned."""


def chained(paths: list[Path]) -> list[tuple[StudySpec, dict[str, Any]]]:
    """Each phase in order with what ``from:`` gives it: ParamSpecs of the earlier phases (drawn, since
    their best is not known yet) or values (fixed there)."""
    carried: dict[str, dict[str, Any]] = {}
    out = []
    for spec in load_phases(paths):
        inherited = {}
        if spec.from_ is not None and spec.from_.study in carried:
            earlier = carried[spec.from_.study]
            if spec.from_.params is not None:
                inherited = {k: earlier[k] for k in spec.from_.params if k in earlier}
            else:
                inherited = {k: v for k, v in earlier.items() if k not in spec.space and k not in spec.fixed}
        carried[spec.name] = {**inherited, **spec.space}
        out.append((spec, inherited))
    return out


def merged(spec: StudySpec, inherited: dict[str, Any]) -> tuple[dict[str, ParamSpec], dict[str, Any]]:
    """(space, fixed) of a phase with what it inherits."""
    space = {**{k: v for k, v in inherited.items() if isinstance(v, ParamSpec)}, **spec.space}
    fixed = {**{k: v for k, v in inherited.items() if not isinstance(v, ParamSpec)}, **spec.fixed}
    return space, fixed


def _draw(spec: StudySpec, inherited: dict[str, Any], samples: int, seed: int) -> list[TrainConfig]:
    """``samples`` configs drawn at random from the phase's space and what it inherits."""
    space, fixed = merged(spec, inherited)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    base = spec.base_config()
    configs = []
    for _ in range(samples):
        trial = study.ask()
        params = suggest(trial, space, fixed)
        study.tell(trial, 0.0)
        configs.append(base.replace(**{k: v for k, v in fixed.items() if k not in spec.fixed}, **params))
    return configs


class Pricer:
    """Prices configs on one device of a calibration table (param counts and estimates cached)."""

    def __init__(self, table: CalibrationTable, device: str, sizes: DataSizes):
        self.table, self.device, self.sizes = table, device, sizes
        self.counts: dict[str, int] = dict(table.param_counts)   # counted by calibrate; the rest here
        self.missing: dict[str, dict] = {}

    def price(self, config: TrainConfig, cap: int) -> Point:
        from facenet.models import SHAPE_FIELDS, count_params
        from facenet.probe import speed_key

        shape = shape_id(tuple(getattr(config, f) for f in SHAPE_FIELDS))
        if shape not in self.counts:
            self.counts[shape] = count_params(config)
        if self.counts[shape] > cap:
            return Point(0.0, 0.0, config.epochs, trains=False)
        key = speed_key(config)
        found = self.table.lookup(self.device, key)
        if found is None:
            self.missing[str(key)] = key
            return Point(0.0, 0.0, config.epochs)
        speed, how = found
        cost = estimate(config, speed, self.sizes, how)
        return Point(cost.setup_s, cost.epoch_s, config.epochs, approximate=how != "measured")


def choose_device(table: CalibrationTable, wanted: str | None) -> str:
    devices = table.devices()
    if not devices:
        raise CalibrationError("the calibration is empty; measure one with: "
                               "facesearch calibrate STUDY.yaml...")
    if wanted:
        matches = [d for d in devices if d == wanted] or [d for d in devices if wanted.lower() in d.lower()]
        if len(matches) != 1:
            raise CalibrationError(f"--device {wanted!r} matches {len(matches)} calibrated devices; "
                                   f"choose one of: {'; '.join(devices)}")
        return matches[0]
    if len(devices) > 1:
        raise CalibrationError(f"the calibration holds {len(devices)} devices; choose one with --device: "
                               f"{'; '.join(devices)}")
    return devices[0]


def build_plan(paths: list[Path], table: CalibrationTable, device: str | None = None,
               sizes: DataSizes | None = None, samples: int = SAMPLES) -> tuple[list[Phase], str]:
    """The phases of ``paths`` in order, each priced at ``samples`` drawn points; (phases, device)."""
    phases, pricer = priced_phases(paths, table, device, sizes, samples)
    return phases, pricer.device


def priced_phases(paths: list[Path], table: CalibrationTable, device: str | None = None,
                  sizes: DataSizes | None = None, samples: int = SAMPLES) -> tuple[list[Phase], Pricer]:
    """``build_plan`` with the pricer that priced it (the plan fitter prices changed fidelities with it)."""
    device = choose_device(table, device)
    pricer = Pricer(table, device, sizes or DataSizes(table.census))
    phases: dict[str, Phase] = {}
    for i, (spec, inherited) in enumerate(chained(paths)):
        configs = _draw(spec, inherited, samples, seed=i)
        phase = Phase(spec, 0, [pricer.price(c, spec.param_cap) for c in configs], inherited, configs)
        phase.trials = _trials(phase)
        phases[spec.name] = phase
    if pricer.missing:
        first = list(pricer.missing.values())[:3]
        raise CalibrationError(f"no calibration on {device!r} for {len(pricer.missing)} network(s), e.g. "
                               f"{'; '.join(', '.join(f'{k}={v}' for k, v in m.items()) for m in first)}; "
                               f"run facesearch calibrate with these studies on that machine")
    return list(phases.values()), pricer


def _trials(phase: Phase) -> int:
    """The phase's trial count: ``budget.n_trials``, at most what its own ``budget.hours`` pays for."""
    spec, each = phase.spec, phase.trial_seconds()
    by_hours = None if spec.hours is None else (math.floor(spec.hours * 3600 / each) if each > 0 else None)
    counts = [n for n in (spec.n_trials, by_hours) if n is not None]
    if not counts:
        raise PlanError(f"{spec.source}: budget has neither n_trials nor hours; a plan needs to know how "
                        f"many trials the phase runs")
    return min(counts)


# ------------------------------------------------------------------ fitting into the budget
def total_seconds(phases: list[Phase]) -> float:
    return sum(p.seconds() for p in phases)


def fit_plan(phases: list[Phase], hours: float) -> list[str]:
    """Scale every phase's trials by one factor (each keeps at least one), then, if that is not enough,
    every phase's epochs, until the plan fits ``hours``; returns what changed, one line per change."""
    budget = hours * 3600
    wanted = {p.name: p.trials for p in phases}
    if total_seconds(phases) <= budget:
        return []

    def at(scale: float, attr: str) -> float:
        for p in phases:
            if attr == "trials":
                p.trials = max(1, math.floor(wanted[p.name] * scale))
            else:
                p.epoch_scale = scale
        return total_seconds(phases)

    if at(0.0, "trials") <= budget:
        _bisect(lambda s: at(s, "trials") <= budget)
    elif at(0.0, "epochs") <= budget:
        _bisect(lambda s: at(s, "epochs") <= budget)
    else:
        least = hours_text(total_seconds(phases))
        raise PlanOverBudget(f"even one trial of one epoch per phase needs {least} GPU-hours, over the "
                             f"{hours:g}-hour budget; drop phases or lower their fidelity")
    changes = [f"{p.name}: {'top' if p.spec.from_ and p.spec.from_.top else 'n_trials'} "
               f"{wanted[p.name]} -> {p.trials}" for p in phases if p.trials != wanted[p.name]]
    changes += [f"{p.name}: epochs {dataclasses.replace(p, epoch_scale=1.0).epochs()} -> {p.epochs()}"
                for p in phases if p.epoch_scale != 1.0]
    return changes


def _bisect(fits) -> None:
    """The largest scale in [0, 1] for which ``fits`` holds (it holds at 0); leaves the plan at it."""
    low, high = 0.0, 1.0
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    fits(low)


# ------------------------------------------------------------------ the table
def hours_text(seconds: float) -> str:
    """GPU-hours to two decimals, or three significant digits below 0.1 (CPU-sized test plans)."""
    h = seconds / 3600
    return f"{h:.2f}" if h >= 0.1 or h == 0 else f"{h:.3g}"


def plan_table(phases: list[Phase], hours: float, gpus: int, device: str):
    from rich.table import Table

    table = Table(title=f"plan on {gpus} x {device}: {hours:g} GPU-hours", title_justify="left")
    columns = ("phase", "from", "trials", "epochs", "resolution", "identities", "GPU-h", "wall-h",
               "cumulative GPU-h")
    for col in columns:
        table.add_column(col, justify="left" if col in ("phase", "from") else "right")
    running = 0.0
    for p in phases:
        running += p.seconds()
        source = "" if p.spec.from_ is None else p.spec.from_.study + (f" top {p.spec.from_.top}"
                                                                        if p.spec.from_.top else "")
        approx = sum(q.approximate for q in p.points)
        table.add_row(p.name, source, str(p.trials), p.epochs(), p.shown("resolution"),
                      p.shown("max_identities"),
                      hours_text(p.seconds()) + ("~" if approx else ""), hours_text(p.wall_seconds(gpus)),
                      hours_text(running))
    total, wall = total_seconds(phases), sum(p.wall_seconds(gpus) for p in phases)
    table.add_section()
    verdict = "fits" if total <= hours * 3600 else f"{hours_text(total - hours * 3600)} over"
    table.add_row("total", "", str(sum(p.trials for p in phases)), "", "", "", hours_text(total),
                  hours_text(wall), f"{verdict} ({hours:g})")
    return table


def plan_json(phases: list[Phase], hours: float, gpus: int, device: str, changes: list[str]) -> dict:
    """The plan as ``--format json`` prints it: a record per phase (hours as numbers), the totals, the fit."""
    rows, running = [], 0.0
    for p in phases:
        running += p.seconds()
        rows.append({"phase": p.name, "from": p.spec.from_.study if p.spec.from_ else None,
                     "top": p.spec.from_.top if p.spec.from_ else None, "trials": p.trials, "epochs": p.epochs(),
                     "resolution": p.shown("resolution"), "identities": p.shown("max_identities"),
                     "gpu_hours": p.seconds() / 3600, "wall_hours": p.wall_seconds(gpus) / 3600,
                     "cumulative_gpu_hours": running / 3600,
                     "approximate": any(q.approximate for q in p.points)})
    total = total_seconds(phases)
    return {"device": device, "gpus": gpus, "budget_hours": hours, "phases": rows, "gpu_hours": total / 3600,
            "wall_hours": sum(p.wall_seconds(gpus) for p in phases) / 3600, "fits": total <= hours * 3600,
            "fit_changes": changes}


def run_plan(paths: list[Path], hours: float, gpus: int, table: CalibrationTable, device: str | None,
             sizes: DataSizes, fit: bool, echo, fmt: str = "table") -> None:
    """Print the plan (``fmt``: search.view.output); over budget, raise ``PlanOverBudget`` (exit 2) unless ``fit``
    scales it to fit."""
    from ..view.output import emit

    phases, device = build_plan(paths, table, device, sizes)
    changes = fit_plan(phases, hours) if fit else []
    record = plan_json(phases, hours, gpus, device, changes)
    emit(fmt, record, lambda: plan_table(phases, hours, gpus, device), rows=record["phases"])
    if fmt != "table":
        echo = _to_stderr   # stdout holds the record alone
    if any(q.approximate for p in phases for q in p.points):
        echo("~ some points priced from the nearest calibrated resolution / batch of the same network")
    echo("trials priced as if none were pruned: pruning only makes a phase cheaper")
    for line in changes:
        echo(f"fit: {line}")
    total = total_seconds(phases)
    if total > hours * 3600:
        over = hours_text(total - hours * 3600)
        raise PlanOverBudget(f"the plan needs {hours_text(total)} GPU-hours, {over} over the {hours:g}-hour "
                             f"budget; lower trials or fidelity, or rerun with --fit")


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)
