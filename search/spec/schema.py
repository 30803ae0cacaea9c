"""The study language's data: a validated study spec (``StudySpec``), its searched params
(``ParamSpec``), ``from:`` (``FromSpec``), and the one error every spec mistake raises."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facenet.config import TrainConfig
from facenet.errors import UserError

DATA_FIELDS = {"train": "train_path", "val": "val_path", "val_list": "val_list"}   # data: key -> TrainConfig field
DEFAULT_CAP = 11_500_000
DEFAULT_MAX_FAILURES = 10      # budget.max_failures without n_trials (with it: 20% of n_trials, 10 at least)


class SpecError(UserError, ValueError):
    """A study spec that cannot run; the message is one line: ``FILE: field.path: what is wrong``."""

    @classmethod
    def at(cls, source: str | Path | None, path: str, message: str) -> "SpecError":
        text = ": ".join(str(p) for p in (source, path, message) if p)
        return cls(" ".join(text.split()))   # one line, whatever the message held


# ------------------------------------------------------------------ the search space
@dataclass(frozen=True)
class ParamSpec:
    """One searched TrainConfig field; it exists in a trial only while every ``when`` condition holds."""

    name: str
    type: str                                   # float | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple = ()
    when: dict[str, tuple] = field(default_factory=dict)   # param or fixed field -> allowed values

    def active(self, values: dict[str, Any]) -> bool:
        return all(ref in values and values[ref] in allowed for ref, allowed in self.when.items())

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return any(value == c and type(value) is type(c) or _same_number(value, c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "int" and not float(value).is_integer():
            return False
        return self.low <= value <= self.high and (self.step is None or on_step(value - self.low, self.step))

    def grid_values(self) -> list | None:
        """Every value the param can take, or None for a continuous float."""
        if self.type == "categorical":
            return list(self.choices)
        step = self.step if self.step is not None else (1 if self.type == "int" else None)
        if step is None:
            return None
        n = round((self.high - self.low) / step)
        values = [self.low + i * step for i in range(n + 1)]
        return values if self.type == "int" else [round(v, 12) for v in values]

    def describe(self) -> str:
        if self.type == "categorical":
            return f"one of {list(self.choices)}"
        extra = (f" step {self.step}" if self.step is not None else "") + (" log" if self.log else "")
        return f"{self.type} in [{self.low}, {self.high}]{extra}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.type == "categorical":
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high)
            out.update({k: v for k, v in (("step", self.step), ("log", self.log)) if v})
        if self.when:
            out["when"] = {k: list(v) for k, v in self.when.items()}
        return out


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool)
            and not isinstance(b, bool) and a == b)


def on_step(offset: float, step: float) -> bool:
    n = round(offset / step)
    return abs(offset - n * step) <= 1e-9 * max(1.0, abs(offset))


class DependencyCycle(ValueError):
    def __init__(self, cycle: list[str]):
        super().__init__(" -> ".join(cycle))
        self.cycle = cycle


def dependency_order(space: dict[str, ParamSpec]) -> list[str]:
    """Space params with every param after those its ``when`` names (spec order otherwise)."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise DependencyCycle(trail[trail.index(name):] + [name])
        state[name] = "visiting"
        for ref in space[name].when:
            if ref in space:
                visit(ref, trail + [name])
        state[name] = "done"
        order.append(name)

    for name in space:
        visit(name, [])
    return order


# ------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class FromSpec:
    study: str
    params: tuple[str, ...] | None = None       # None: every param of the earlier study's best trial
    top: int | None = None                      # promote: re-run the earlier study's best ``top`` trials here


@dataclass(frozen=True)
class Promotion:
    """One trial of an earlier (proxy) study, queued again at this spec's fidelity."""

    params: dict[str, Any]                      # this spec's space params, as the proxy trial drew them
    source: dict[str, Any]                      # {"study", "trial", "value"}: the proxy trial and its EER


@dataclass(frozen=True)
class StudySpec:
    name: str
    description: str = ""
    data: dict[str, str] = field(default_factory=dict)        # train / val / val_list, expanded
    fixed: dict[str, Any] = field(default_factory=dict)       # TrainConfig fields, coerced to their types
    space: dict[str, ParamSpec] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe"})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    param_cap: int = DEFAULT_CAP
    n_trials: int | None = None
    timeout: float | None = None
    epochs: int | None = None
    max_failures: int = DEFAULT_MAX_FAILURES                  # FAIL trials before the workers stop
    hours: float | None = None                                # GPU-hours for all trials together
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    from_: FromSpec | None = None
    keep_checkpoints: int = 3
    tracking: dict[str, str] = field(default_factory=dict)     # backend -> target (search.track.BACKENDS)
    source: Path | None = None
    inherited: dict[str, Any] = field(default_factory=dict)   # fields apply_from fixed (also in ``fixed``)
    promoted: tuple[Promotion, ...] = ()                      # from: {top: k}: queued as the study is made
    signature: str = field(default="", repr=False)            # see space_signature

    def space_signature(self) -> str:
        """A hash of the spec as written (space, fixed, data before ${VAR} expansion, from:): two different
        specs under one name in one storage are refused; the same file on machines with other paths is not."""
        return self.signature

    def base_config(self) -> TrainConfig:
        values = {DATA_FIELDS[k]: v for k, v in self.data.items()} | self.fixed
        if self.epochs is not None:
            values["epochs"] = self.epochs
        return TrainConfig().replace(**values)

    def to_config(self, params: dict[str, Any]) -> TrainConfig:
        return self.base_config().replace(**params)

    def to_json(self) -> str:
        return json.dumps({
            "name": self.name, "description": self.description, "data": self.data, "fixed": self.fixed,
            "space": {k: p.to_dict() for k, p in self.space.items()}, "sampler": self.sampler,
            "pruner": self.pruner, "param_cap": self.param_cap, "n_trials": self.n_trials, "timeout": self.timeout,
            "epochs": self.epochs, "max_failures": self.max_failures, "hours": self.hours, "enqueue": self.enqueue,
            "keep_checkpoints": self.keep_checkpoints, "tracking": self.tracking,
            "from": dataclasses.asdict(self.from_) if self.from_ else None, "inherited": self.inherited,
            "promoted": [dataclasses.asdict(p) for p in self.promoted],
            "source": str(self.source) if self.source else None,
        }, sort_keys=True)

