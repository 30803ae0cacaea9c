"""Study specs: one YAML file per phase of the experiment plan -> a validated ``StudySpec``.

Every mistake in a spec is a ``SpecError`` whose message is one line naming the file and the
field path (``studies/x.yaml: space.lr.low: must be > 0 when log: true``): the CLI prints it and
exits 2. Everything is checked at load time, before a study or a run folder exists.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn

import yaml

from facenet.config import TrainConfig, coerce
from facenet.errors import ConfigError, UserError

TOP_KEYS = ("name", "description", "data", "fixed", "space", "sampler", "pruner", "constraint", "budget",
            "enqueue", "from", "keep_checkpoints")
DATA_FIELDS = {"train": "train_path", "val": "val_path", "val_list": "val_list"}   # data: key -> TrainConfig field
FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(TrainConfig)}           # "int", "float", "str", "bool"
PARAM_KEYS = {"float": ("type", "low", "high", "step", "log", "when"),
              "int": ("type", "low", "high", "step", "log", "when"),
              "categorical": ("type", "choices", "when")}
NUMERIC_FIELDS = {"float": ("float",), "int": ("int", "float")}                  # param type -> field types it fits
DEFAULT_CAP = 11_500_000
NAME = re.compile(r"[A-Za-z0-9_.-]+")
SCALARS = (str, int, float, bool)


class SpecError(UserError, ValueError):
    """A study spec that cannot run; the message is one line: ``FILE: field.path: what is wrong``."""

    @classmethod
    def at(cls, source: str | Path | None, path: str, message: str) -> "SpecError":
        text = ": ".join(str(p) for p in (source, path, message) if p)
        return cls(" ".join(text.split()))   # one line, whatever the message held


def did_you_mean(key: object, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


KINDS: dict[str, Callable[[Any], bool]] = {    # what a field expects -> its check (YAML booleans are not numbers)
    "an integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "a number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "a string": lambda v: isinstance(v, str),
    "true or false": lambda v: isinstance(v, bool),
    "a list": lambda v: isinstance(v, list),
}


def _kind(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a mapping", type(None): "null"}
    return names.get(type(value), type(value).__name__)


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
        return self.low <= value <= self.high and (self.step is None or _on_step(value - self.low, self.step))

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


def _on_step(offset: float, step: float) -> bool:
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
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    from_: FromSpec | None = None
    keep_checkpoints: int = 3
    source: Path | None = None
    inherited: dict[str, Any] = field(default_factory=dict)   # fields apply_from fixed (also in ``fixed``)
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
            "epochs": self.epochs, "enqueue": self.enqueue, "keep_checkpoints": self.keep_checkpoints,
            "from": dataclasses.asdict(self.from_) if self.from_ else None, "inherited": self.inherited,
            "source": str(self.source) if self.source else None,
        }, sort_keys=True)


# ------------------------------------------------------------------ counts and durations
_COUNT = re.compile(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgb]?)")
_COUNT_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}
_DURATION = re.compile(r"([0-9]*\.?[0-9]+)\s*([smhd])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_count(value: int | float | str) -> int:
    """``11500000``, ``11.5M``, ``800k``, ``1.2e7``, ``"11_500_000"`` -> a positive whole number."""
    bad = SpecError(f"bad count {value!r}: use a positive whole number, optionally with k, M or G "
                    f"(11.5M, 800k, 11500000)")
    if isinstance(value, bool):
        raise bad
    text = str(value).strip().lower().replace("_", "").replace(",", "")
    match = _COUNT.fullmatch(text)
    if not match:
        raise bad
    try:
        number = Decimal(match[1]) * _COUNT_UNITS[match[2]]
    except InvalidOperation:
        raise bad from None
    if number <= 0 or number != number.to_integral_value():
        raise bad
    return int(number)


def parse_duration(value: int | float | str) -> float:
    """Seconds from ``3600``, ``"2h"``, ``"30m"``, ``"1h30m"``, ``"1.5d"``."""
    bad = SpecError(f"bad duration {value!r}: use seconds or a number with s, m, h or d (2h, 30m, 1h30m)")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise bad from None
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if not 0 < seconds < math.inf:
        raise bad
    return seconds


# ------------------------------------------------------------------ YAML
class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-4`` as a float (YAML 1.1 insists on a dot) and refuses duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, SCALARS):
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_spec(path: str | Path) -> StudySpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError.at(path, "", "study spec not found")
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpecError.at(path, "", f"YAML syntax error{where}: {getattr(e, 'problem', None) or e}") from None
    except UnicodeDecodeError:
        raise SpecError.at(path, "", "not a UTF-8 text file") from None
    return parse_spec(raw, source=path)


# ------------------------------------------------------------------ parsing
class _Reader:
    """Type checks that fail with the source file and the field path."""

    def __init__(self, source: str | Path | None):
        self.source = source

    def fail(self, path: str, message: str) -> NoReturn:
        raise SpecError.at(self.source, path, message)

    def mapping(self, value: Any, path: str, known: Iterable[str] | None = None,
                required: Iterable[str] = ()) -> dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {_kind(value)}")
        if known is not None:
            known = list(known)
            for key in value:
                if key not in known:
                    self.fail(path, f"unknown key {key!r}{did_you_mean(key, known)}")
        for key in required:
            if key not in value:
                self.fail(_join(path, key), "required")
        return value

    def expect(self, value: Any, path: str, kind: str) -> Any:
        if not KINDS[kind](value):
            self.fail(path, f"expected {kind}, got {_kind(value)} {value!r}")
        return value

    def int_at_least(self, value: Any, path: str, minimum: int = 1) -> int:
        self.expect(value, path, "an integer")
        if value < minimum:
            self.fail(path, f"must be >= {minimum}, got {value}")
        return value

    def field_name(self, key: Any, path: str) -> str:
        """``key`` must be a TrainConfig field other than the data paths."""
        if key in DATA_FIELDS.values():
            self.fail(path, f"{key!r}: data paths come only via data: ({', '.join(DATA_FIELDS)})")
        if key not in FIELD_TYPES:
            self.fail(path, f"unknown TrainConfig field {key!r}{did_you_mean(key, FIELD_TYPES)}")
        return key

    def field_value(self, key: str, value: Any, path: str) -> Any:
        """A scalar that fits field ``key``, coerced; registry names must be known."""
        if not isinstance(value, SCALARS):
            self.fail(path, f"expected a single value, got {_kind(value)}")
        try:
            coerced = coerce(key, value)
        except ConfigError as e:
            self.fail(path, str(e))
        if key in NAME_CHECKS:
            try:
                NAME_CHECKS[key](coerced)
            except ConfigError as e:   # UnknownName lists the known names
                self.fail(path, str(e))
        return coerced


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _registry(module: str, name: str) -> Callable[[str], Any]:
    return lambda value: getattr(importlib.import_module(module), name).get(value)


def _augment(value: str) -> None:
    importlib.import_module("facenet.augment").check_augment(value)


# fields whose values are registry names (imported on first use: the registries pull in torch)
NAME_CHECKS: dict[str, Callable[[str], Any]] = {
    "model": _registry("facenet.models", "MODELS"), "loss": _registry("facenet.losses", "LOSSES"),
    "optimizer": _registry("facenet.optim", "OPTIMIZERS"), "scheduler": _registry("facenet.optim", "SCHEDULERS"),
    "augment": _augment,
}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(r: _Reader, text: str, path: str) -> str:
    """``${VAR}`` and ``${VAR:-default}`` (the default also when VAR is empty) from the environment."""
    def sub(m: re.Match) -> str:
        value, default = os.environ.get(m[1]), m[2]
        if default is not None:
            return value or default
        if value is None:
            r.fail(path, f"environment variable {m[1]} is not set; set it or write ${{{m[1]}:-default}}")
        return value

    return _VAR.sub(sub, text)


def _parse_param(r: _Reader, name: str, raw: Any) -> ParamSpec:
    path = f"space.{name}"
    raw = r.mapping(raw, path, {k for keys in PARAM_KEYS.values() for k in keys}, required=("type",))
    kind = raw["type"]
    if kind not in PARAM_KEYS:
        r.fail(f"{path}.type", f"unknown type {kind!r}{did_you_mean(kind, PARAM_KEYS)}; use float, int or categorical")
    for key in raw:
        if key not in PARAM_KEYS[kind]:
            r.fail(f"{path}.{key}", f"not a key of type: {kind} (its keys: {', '.join(PARAM_KEYS[kind])})")
    when = _parse_when(r, raw.get("when"), f"{path}.when")
    return PARAM_PARSERS[kind](r, name, raw, path, when)


def _parse_numeric(r: _Reader, name: str, raw: dict, path: str, when: dict) -> ParamSpec:
    kind = raw["type"]
    if FIELD_TYPES[name] not in NUMERIC_FIELDS[kind]:
        fits = "int" if FIELD_TYPES[name] == "int" else "categorical"
        r.fail(f"{path}.type", f"{name} holds {FIELD_TYPES[name]} values; use type: {fits}")
    number = "an integer" if kind == "int" else "a number"
    low = r.expect(raw.get("low"), f"{path}.low", number)
    high = r.expect(raw.get("high"), f"{path}.high", number)
    log = r.expect(raw.get("log", False), f"{path}.log", "true or false")
    step = raw.get("step")
    if low > high:
        r.fail(f"{path}.low", f"low {low} > high {high}")
    if log and low <= 0:
        r.fail(f"{path}.low", "must be > 0 when log: true")
    if step is not None:
        r.expect(step, f"{path}.step", number)
        if step <= 0:
            r.fail(f"{path}.step", f"must be > 0, got {step}")
        if log:
            r.fail(f"{path}.step", "cannot be combined with log: true")
        if not _on_step(high - low, step):
            r.fail(f"{path}.high", f"high - low ({high} - {low}) must be a multiple of step {step}")
    cast = int if kind == "int" else float
    return ParamSpec(name, kind, cast(low), cast(high), None if step is None else cast(step), log, when=when)


def _parse_categorical(r: _Reader, name: str, raw: dict, path: str, when: dict) -> ParamSpec:
    choices = raw.get("choices")
    if not isinstance(choices, list) or not choices:
        r.fail(f"{path}.choices", f"needs a non-empty list of values, got {_kind(choices)} {choices!r}")
    for i, choice in enumerate(choices):
        r.field_value(name, choice, f"{path}.choices[{i}]")
        if choice in choices[:i]:
            r.fail(f"{path}.choices[{i}]", f"{choice!r} is listed twice")
    return ParamSpec(name, "categorical", choices=tuple(choices), when=when)


PARAM_PARSERS = {"float": _parse_numeric, "int": _parse_numeric, "categorical": _parse_categorical}


def _parse_when(r: _Reader, raw: Any, path: str) -> dict[str, tuple]:
    when = {}
    for ref, allowed in r.mapping(raw, path).items():
        values = allowed if isinstance(allowed, list) else [allowed]
        if not values or not all(isinstance(v, SCALARS) for v in values):
            r.fail(f"{path}.{ref}", "expected a value or a non-empty list of values")
        when[ref] = tuple(values)
    return when


def _check_space(r: _Reader, space: dict[str, ParamSpec], fixed: dict[str, Any], pending: set[str] | None) -> None:
    """``when`` names a space param or a fixed field (or one ``from:`` will fix: ``pending``, None = any)
    with values it can take; dependencies have no cycle."""
    for name, param in space.items():
        if name in fixed:
            r.fail(f"space.{name}", "also in fixed; a field is either fixed or searched")
        for ref, allowed in param.when.items():
            path = f"space.{name}.when.{ref}"
            if ref in space:
                for value in allowed:
                    if not space[ref].contains(value):
                        r.fail(path, f"{value!r} is never a value of {ref} ({space[ref].describe()})")
            elif ref not in fixed and not (ref in FIELD_TYPES if pending is None else ref in pending):
                r.fail(path, f"{ref!r} is neither a space param nor a fixed field{did_you_mean(ref, [*space, *fixed])}")
    try:
        dependency_order(space)
    except DependencyCycle as e:
        r.fail(f"space.{e.cycle[0]}.when", f"dependency cycle {e}")


def _parse_fixed(r: _Reader, raw: Any, written: dict[str, str]) -> dict[str, Any]:
    fixed = {}
    for key, value in r.mapping(raw, "fixed").items():
        path = f"fixed.{key}"
        r.field_name(key, "fixed")
        if isinstance(value, str) and "${" in value:
            expanded = _expand(r, value, path)
            written[path], value = value, expanded
        fixed[key] = r.field_value(key, value, path)
    return fixed


def _parse_data(r: _Reader, raw: Any, written: dict[str, str]) -> dict[str, str]:
    data = {}
    for key, value in r.mapping(raw, "data", DATA_FIELDS).items():
        path = f"data.{key}"
        text = r.expect(value, path, "a string")
        data[key] = _expand(r, text, path)
        if data[key] != text:
            written[path] = text
    return data


def _parse_from(r: _Reader, raw: Any, fixed: dict[str, Any]) -> FromSpec | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"study": raw}
    raw = r.mapping(raw, "from", ("study", "params"), required=("study",))
    study = r.expect(raw["study"], "from.study", "a string")
    params = raw.get("params")
    if params is not None:
        r.expect(params, "from.params", "a list")
        for i, key in enumerate(params):
            r.field_name(key, f"from.params[{i}]")
            if key in fixed:
                r.fail(f"from.params[{i}]", f"{key!r} is also in fixed; a field is either fixed or taken from:")
        params = tuple(params)
    return FromSpec(study, params)


def _options(cls: type) -> list[str]:
    """Constructor keywords a YAML scalar can set (not callables, samplers or trial lists)."""
    skip = ("seed", "search_space")
    objects = ("Callable", "Sampler", "FrozenTrial", "Mapping", "dict")
    return [p.name for p in inspect.signature(cls.__init__).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self" and p.name not in skip
            and not any(o in str(p.annotation) for o in objects)]


# name -> optuna class name; samplers need these packages beyond optuna's own
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "grid": "GridSampler", "cmaes": "CmaEsSampler",
            "gp": "GPSampler"}
SAMPLER_NEEDS = {"cmaes": ("cmaes",), "gp": ("scipy", "torch")}
PRUNERS = {"median": "MedianPruner", "percentile": "PercentilePruner", "hyperband": "HyperbandPruner",
           "none": "NopPruner"}


def _parse_component(r: _Reader, raw: Any, path: str, classes: dict[str, str], module: str,
                     default: str, seeded: bool) -> dict[str, Any]:
    raw = dict(r.mapping(raw, path))
    name = raw.setdefault("name", default)
    if name not in classes:
        r.fail(f"{path}.name", f"unknown {path} {name!r}{did_you_mean(name, classes)}; known: {', '.join(classes)}")
    cls = getattr(importlib.import_module(module), classes[name])
    keys = ["name", *(["seed"] if seeded else []), *_options(cls)]
    r.mapping(raw, path, keys)
    if raw.get("seed") is not None:
        r.expect(raw["seed"], f"{path}.seed", "an integer")
    for key, value in raw.items():
        if not isinstance(value, SCALARS + (type(None),)):
            r.fail(f"{path}.{key}", f"expected a single value, got {_kind(value)}")
    return raw


def _parse_budget(r: _Reader, raw: Any) -> tuple[int | None, float | None, int | None]:
    raw = r.mapping(raw, "budget", ("n_trials", "timeout", "epochs"))
    n_trials = raw.get("n_trials")
    epochs = raw.get("epochs")
    timeout = raw.get("timeout")
    if n_trials is not None:
        r.int_at_least(n_trials, "budget.n_trials")
    if epochs is not None:
        r.int_at_least(epochs, "budget.epochs")
    if timeout is not None:
        try:
            timeout = parse_duration(timeout)
        except SpecError as e:
            r.fail("budget.timeout", str(e))
    return n_trials, timeout, epochs


def _parse_cap(r: _Reader, raw: Any) -> int:
    raw = r.mapping(raw, "constraint", ("param_cap",))
    try:
        return parse_count(raw.get("param_cap", DEFAULT_CAP))
    except SpecError as e:
        r.fail("constraint.param_cap", str(e))


def _parse_enqueue(r: _Reader, raw: Any) -> list[dict[str, Any]]:
    points = r.expect([] if raw is None else raw, "enqueue", "a list")
    for i, point in enumerate(points):
        r.mapping(point, f"enqueue[{i}]")   # keys and values are checked against the space by check_enqueue
    return [dict(p) for p in points]


def _signature(space: dict[str, ParamSpec], fixed: dict[str, Any], data: dict[str, str],
               from_: FromSpec | None, written: dict[str, str]) -> str:
    as_written = {"data": {k: written.get(f"data.{k}", v) for k, v in data.items()},
                  "fixed": {k: written.get(f"fixed.{k}", v) for k, v in fixed.items()},
                  "space": {k: p.to_dict() for k, p in space.items()},
                  "from": dataclasses.asdict(from_) if from_ else None}
    return hashlib.sha256(json.dumps(as_written, sort_keys=True).encode()).hexdigest()


def parse_spec(raw: Any, source: str | Path | None = None) -> StudySpec:
    """A validated ``StudySpec`` from the YAML's mapping; ``source`` names the file in errors."""
    r = _Reader(source)
    raw = r.mapping(raw, "", TOP_KEYS, required=("name", "space"))
    name = r.expect(raw["name"], "name", "a string")
    if not NAME.fullmatch(name):
        r.fail("name", f"{name!r}: use letters, digits, '_', '.' and '-' only")
    description = r.expect(raw.get("description") or "", "description", "a string").strip()
    written: dict[str, str] = {}
    data = _parse_data(r, raw.get("data"), written)
    fixed = _parse_fixed(r, raw.get("fixed"), written)
    space_raw = r.mapping(raw["space"], "space")
    if not space_raw:
        r.fail("space", "needs at least one param")
    space = {r.field_name(k, "space"): _parse_param(r, k, v) for k, v in space_raw.items()}
    from_ = _parse_from(r, raw.get("from"), fixed)
    n_trials, timeout, epochs = _parse_budget(r, raw.get("budget"))
    if epochs is not None and "epochs" in space:
        r.fail("budget.epochs", "epochs is searched in space; drop budget.epochs")
    if epochs is not None and fixed.get("epochs", epochs) != epochs:
        r.fail("budget.epochs", f"{epochs} conflicts with fixed.epochs {fixed['epochs']}; keep one")
    spec = StudySpec(
        name=name, description=description, data=data, fixed=fixed, space=space,
        sampler=_parse_component(r, raw.get("sampler"), "sampler", SAMPLERS, "optuna.samplers", "tpe", True),
        pruner=_parse_component(r, raw.get("pruner"), "pruner", PRUNERS, "optuna.pruners", "median", False),
        param_cap=_parse_cap(r, raw.get("constraint")), n_trials=n_trials, timeout=timeout,
        epochs=epochs if epochs is not None else fixed.get("epochs"), enqueue=_parse_enqueue(r, raw.get("enqueue")),
        from_=from_, keep_checkpoints=r.int_at_least(raw.get("keep_checkpoints", 3), "keep_checkpoints", 0),
        source=Path(source) if source is not None else None,
        signature=_signature(space, fixed, data, from_, written))
    pending = None if from_ and from_.params is None else set(from_.params if from_ else ())
    _validate(r, spec, pending)
    return spec


def _validate(r: _Reader, spec: StudySpec, pending: set[str] | None) -> None:
    """Checks across sections, run again after ``apply_from`` changes the space."""
    from .space import check_enqueue   # space.py builds on this module

    _check_space(r, spec.space, spec.fixed, pending)
    check_enqueue(spec)
    for package in SAMPLER_NEEDS.get(spec.sampler["name"], ()):
        if importlib.util.find_spec(package) is None:
            r.fail("sampler.name", f"{spec.sampler['name']} needs the {package!r} package (pip install {package})")
    if spec.sampler["name"] == "grid":
        grid_space(spec)
    try:
        build_pruner(spec)
    except (TypeError, ValueError) as e:
        r.fail("pruner", str(e))


# ------------------------------------------------------------------ optuna objects
def grid_space(spec: StudySpec) -> dict[str, list]:
    """Every value of every param, for the grid sampler; a continuous float has no grid."""
    grid = {}
    for name, param in spec.space.items():
        values = param.grid_values()
        if values is None:
            raise SpecError.at(spec.source, f"space.{name}", "the grid sampler needs a step or categorical choices "
                                                             "for a float param")
        grid[name] = values
    return grid


# samplers that take something built from the space beyond seed and options
SAMPLER_SPACE_ARGS: dict[str, Callable[[StudySpec], dict[str, Any]]] = {
    "grid": lambda spec: {"search_space": grid_space(spec)},
}


def build_sampler(spec: StudySpec, seed_offset: int = 0):
    """The spec's sampler; each worker passes its own ``seed_offset`` so workers do not all start alike."""
    import optuna

    options = {k: v for k, v in spec.sampler.items() if k not in ("name", "seed")}
    seed = spec.sampler.get("seed")
    if seed is not None:
        options["seed"] = seed + seed_offset
    options.update(SAMPLER_SPACE_ARGS.get(spec.sampler["name"], lambda _: {})(spec))
    return getattr(optuna.samplers, SAMPLERS[spec.sampler["name"]])(**options)


def build_pruner(spec: StudySpec):
    import optuna

    options = {k: v for k, v in spec.pruner.items() if k != "name"}
    return getattr(optuna.pruners, PRUNERS[spec.pruner["name"]])(**options)


# ------------------------------------------------------------------ from: an earlier phase
def apply_from(spec: StudySpec, storage) -> StudySpec:
    """Fix the ``from:`` params to the best complete trial of the earlier study in ``storage``.

    The earlier study's own inherited values come along, so a chain of phases carries every
    decision forward; a listed param absent from the best trial (inactive there) stays as it is.
    Listed params leave this spec's space; with no list (every param), what this spec searches or
    fixes itself wins, so a later phase can search again what an earlier one settled.
    """
    if spec.from_ is None:
        return spec
    import optuna
    from optuna.trial import TrialState

    from .workers import SPEC

    r = _Reader(spec.source)
    name = spec.from_.study
    existing = optuna.get_all_study_names(storage)
    if name not in existing:
        names = ", ".join(sorted(existing)) or "none"
        r.fail("from.study", f"no study named {name!r} in this storage (studies: {names}); run that phase first")
    earlier = optuna.load_study(study_name=name, storage=storage)
    trials = earlier.get_trials(deepcopy=False)
    if not any(t.state == TrialState.COMPLETE for t in trials):
        r.fail("from.study", f"study {name!r} has no complete trial yet; run it first")
    try:
        best = earlier.best_trial
    except ValueError as e:
        r.fail("from.study", f"study {name!r}: {e}")
    stored = earlier.user_attrs.get(SPEC)
    before = (json.loads(stored) if isinstance(stored, str) else stored or {}).get("inherited", {})
    available = {**before, **best.params}
    known = set(before).union(*(t.params for t in trials))
    listed = spec.from_.params is not None
    inherited = {}
    for i, key in enumerate(spec.from_.params if listed else available):
        path = f"from.params[{i}]" if listed else "from"
        if key not in known:
            r.fail(path, f"{key!r} is not a param of study {name!r} (its params: {', '.join(sorted(known))})")
        if key in available and (listed or key not in spec.space and key not in spec.fixed):
            inherited[key] = r.field_value(r.field_name(key, path), available[key], path)
    enqueue = [p for p in ({k: v for k, v in point.items() if k not in inherited} for point in spec.enqueue) if p]
    out = dataclasses.replace(spec, fixed={**inherited, **spec.fixed}, inherited=inherited, enqueue=enqueue,
                              space={k: p for k, p in spec.space.items() if k not in inherited})
    _validate(r, out, set())
    return out
