"""A study spec from its YAML: section parsers, cross-section checks, and ``load_spec``.

Every mistake in a spec is a ``SpecError`` whose message is one line naming the file and the
field path: the CLI prints it and exits 2. Everything is checked at load time, before a study or a
run folder exists.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from facenet.config import FIELD_TYPES
from facenet.errors import did_you_mean

from .components import PRUNERS, SAMPLER_NEEDS, SAMPLERS, build_pruner, grid_space, parse_component
from .reader import SCALARS, Reader, expand, kind_of, read_yaml
from .schema import (DATA_FIELDS, DEFAULT_CAP, DEFAULT_MAX_FAILURES, DependencyCycle, FromSpec, ParamSpec,
                     SpecError, StudySpec, dependency_order, on_step)
from .units import parse_duration, parse_count
from ..track.registry import TrackingError, parse_targets

TOP_KEYS = ("name", "description", "data", "fixed", "space", "sampler", "pruner", "constraint", "budget",
            "enqueue", "from", "keep_checkpoints", "tracking")
PARAM_KEYS = {"float": ("type", "low", "high", "step", "log", "when"),
              "int": ("type", "low", "high", "step", "log", "when"),
              "categorical": ("type", "choices", "when")}
NUMERIC_FIELDS = {"float": ("float",), "int": ("int", "float")}                  # param type -> field types it fits
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")   # a folder name of its own: no '.', '..' or separators


def load_spec(path: str | Path) -> StudySpec:
    return parse_spec(read_yaml(path), source=Path(path))


def _parse_param(r: Reader, name: str, raw: Any) -> ParamSpec:
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


def _parse_numeric(r: Reader, name: str, raw: dict, path: str, when: dict) -> ParamSpec:
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
        if not on_step(high - low, step):
            r.fail(f"{path}.high", f"high - low ({high} - {low}) must be a multiple of step {step}")
    cast = int if kind == "int" else float
    return ParamSpec(name, kind, cast(low), cast(high), None if step is None else cast(step), log, when=when)


def _parse_categorical(r: Reader, name: str, raw: dict, path: str, when: dict) -> ParamSpec:
    choices = raw.get("choices")
    if not isinstance(choices, list) or not choices:
        r.fail(f"{path}.choices", f"needs a non-empty list of values, got {kind_of(choices)} {choices!r}")
    for i, choice in enumerate(choices):
        r.field_value(name, choice, f"{path}.choices[{i}]")
        if choice in choices[:i]:
            r.fail(f"{path}.choices[{i}]", f"{choice!r} is listed twice")
    return ParamSpec(name, "categorical", choices=tuple(choices), when=when)


PARAM_PARSERS = {"float": _parse_numeric, "int": _parse_numeric, "categorical": _parse_categorical}


def _parse_when(r: Reader, raw: Any, path: str) -> dict[str, tuple]:
    when = {}
    for ref, allowed in r.mapping(raw, path).items():
        values = allowed if isinstance(allowed, list) else [allowed]
        if not values or not all(isinstance(v, SCALARS) for v in values):
            r.fail(f"{path}.{ref}", "expected a value or a non-empty list of values")
        when[ref] = tuple(values)
    return when


def _check_space(r: Reader, space: dict[str, ParamSpec], fixed: dict[str, Any], pending: set[str] | None) -> None:
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


def _parse_fixed(r: Reader, raw: Any, written: dict[str, str]) -> dict[str, Any]:
    fixed = {}
    for key, value in r.mapping(raw, "fixed").items():
        path = f"fixed.{key}"
        r.field_name(key, "fixed")
        if isinstance(value, str) and "${" in value:
            expanded = expand(r, value, path)
            written[path], value = value, expanded
        fixed[key] = r.field_value(key, value, path)
    return fixed


def _parse_data(r: Reader, raw: Any, written: dict[str, str]) -> dict[str, str]:
    data = {}
    for key, value in r.mapping(raw, "data", DATA_FIELDS).items():
        path = f"data.{key}"
        text = r.expect(value, path, "a string")
        data[key] = expand(r, text, path)
        if data[key] != text:
            written[path] = text
    return data


def _parse_from(r: Reader, raw: Any, fixed: dict[str, Any]) -> FromSpec | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"study": raw}
    raw = r.mapping(raw, "from", ("study", "params", "top"), required=("study",))
    study = r.expect(raw["study"], "from.study", "a string")
    top = None if raw.get("top") is None else r.int_at_least(raw["top"], "from.top")
    if top is not None and raw.get("params") is not None:
        r.fail("from.top", "promotes whole trials; drop from.params (fixed: holds the full fidelity)")
    params = raw.get("params")
    if params is not None:
        r.expect(params, "from.params", "a list")
        for i, key in enumerate(params):
            r.field_name(key, f"from.params[{i}]")
            if key in fixed:
                r.fail(f"from.params[{i}]", f"{key!r} is also in fixed; a field is either fixed or taken from:")
        params = tuple(params)
    return FromSpec(study, params, top)



def _parse_hours(r: Reader, raw: Any) -> float | None:
    """``budget.hours``: GPU-hours (a number, or a duration such as ``90m``) shared by every worker."""
    hours = r.mapping(raw, "budget").get("hours")
    if hours is None:
        return None
    if isinstance(hours, (int, float)) and not isinstance(hours, bool):
        if not 0 < hours < float("inf"):
            r.fail("budget.hours", f"must be > 0 GPU-hours, got {hours}")
        return float(hours)
    try:
        return parse_duration(hours) / 3600
    except SpecError as e:
        r.fail("budget.hours", f"{e}; a plain number means hours")


BUDGET_KEYS = ("n_trials", "timeout", "epochs", "hours", "max_failures")


def _parse_budget(r: Reader, raw: Any) -> tuple[int | None, float | None, int | None]:
    raw = r.mapping(raw, "budget", BUDGET_KEYS)
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


def _parse_max_failures(r: Reader, raw: Any, n_trials: int | None) -> int:
    """FAIL trials a study may hold before its workers stop: budget.max_failures, else 20% of n_trials (10 at
    least, 10 without n_trials)."""
    value = raw.get("max_failures") if isinstance(raw, dict) else None
    if value is None:
        return max(DEFAULT_MAX_FAILURES, -(-n_trials // 5)) if n_trials else DEFAULT_MAX_FAILURES
    return r.int_at_least(value, "budget.max_failures", 1)


def _parse_cap(r: Reader, raw: Any) -> int:
    raw = r.mapping(raw, "constraint", ("param_cap",))
    try:
        return parse_count(raw.get("param_cap", DEFAULT_CAP))
    except SpecError as e:
        r.fail("constraint.param_cap", str(e))


def _parse_tracking(r: Reader, raw: Any) -> dict[str, str]:
    """``tracking: {mlflow: URI, wandb: PROJECT, tensorboard: DIR}``, any subset (search.track.BACKENDS)."""
    try:
        return parse_targets(raw)
    except TrackingError as e:
        r.fail("", str(e))


def _parse_enqueue(r: Reader, raw: Any) -> list[dict[str, Any]]:
    points = r.expect([] if raw is None else raw, "enqueue", "a list")
    for i, point in enumerate(points):
        r.mapping(point, f"enqueue[{i}]")   # keys and values are checked against the space by check_enqueue
    return [dict(p) for p in points]


def check_enqueue(spec: StudySpec) -> None:
    """Every enqueued point names space params with values inside the space, used where they are given."""
    for i, point in enumerate(spec.enqueue):
        path = f"enqueue[{i}]"
        values = {**spec.fixed, **point}
        for key, value in point.items():
            if key not in spec.space:
                raise SpecError.at(spec.source, path, f"unknown key {key!r}{did_you_mean(key, spec.space)}; "
                                                      f"enqueue keys must be space params ({', '.join(spec.space)})")
            param = spec.space[key]
            if not param.contains(value):
                raise SpecError.at(spec.source, f"{path}.{key}", f"{value!r} is outside the space ({param.describe()})")
            if all(ref in values for ref in param.when) and not param.active(values):
                condition = ", ".join(f"{ref} in {list(allowed)}" for ref, allowed in param.when.items())
                raise SpecError.at(spec.source, f"{path}.{key}", f"unused in this point: {key} exists only when "
                                                                 f"{condition}")


def _from_signature(from_: FromSpec | None) -> dict | None:
    """``from:`` as signed; ``top`` only when given (studies made before it keep their signature)."""
    if from_ is None:
        return None
    return {k: v for k, v in dataclasses.asdict(from_).items() if k != "top" or v is not None}


def _signature(space: dict[str, ParamSpec], fixed: dict[str, Any], data: dict[str, str],
               from_: FromSpec | None, written: dict[str, str]) -> str:
    as_written = {"data": {k: written.get(f"data.{k}", v) for k, v in data.items()},
                  "fixed": {k: written.get(f"fixed.{k}", v) for k, v in fixed.items()},
                  "space": {k: p.to_dict() for k, p in space.items()},
                  "from": _from_signature(from_)}
    return hashlib.sha256(json.dumps(as_written, sort_keys=True).encode()).hexdigest()


def name_problem(name: str) -> str | None:
    """What is wrong with a study name (it names the study's run folder), or None."""
    if NAME.fullmatch(name):
        return None
    return (f"{name!r}: use letters, digits, '_', '.' and '-' only, starting with a letter, digit or '_' "
            f"(a study name names a folder: not '.', '..' or a path)")


def parse_spec(raw: Any, source: str | Path | None = None) -> StudySpec:
    """A validated ``StudySpec`` from the YAML's mapping; ``source`` names the file in errors."""
    r = Reader(source)
    raw = r.mapping(raw, "", TOP_KEYS, required=("name", "space"))
    name = r.expect(raw["name"], "name", "a string")
    if problem := name_problem(name):
        r.fail("name", problem)
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
        sampler=parse_component(r, raw.get("sampler"), "sampler", SAMPLERS, "optuna.samplers", "tpe", True),
        pruner=parse_component(r, raw.get("pruner"), "pruner", PRUNERS, "optuna.pruners", "median", False),
        param_cap=_parse_cap(r, raw.get("constraint")), timeout=timeout, hours=_parse_hours(r, raw.get("budget")),
        max_failures=_parse_max_failures(r, raw.get("budget"), n_trials),
        n_trials=n_trials if n_trials is not None or from_ is None else from_.top,   # a promotion: its top k
        epochs=epochs if epochs is not None else fixed.get("epochs"), enqueue=_parse_enqueue(r, raw.get("enqueue")),
        from_=from_, keep_checkpoints=r.int_at_least(raw.get("keep_checkpoints", 3), "keep_checkpoints", 0),
        tracking=_parse_tracking(r, raw.get("tracking")),
        source=Path(source) if source is not None else None,
        signature=_signature(space, fixed, data, from_, written))
    pending = None if from_ and from_.params is None else set(from_.params if from_ else ())
    validate(r, spec, pending)
    return spec


def validate(r: Reader, spec: StudySpec, pending: set[str] | None) -> None:
    """Checks across sections, run again after ``apply_from`` changes the space."""
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

