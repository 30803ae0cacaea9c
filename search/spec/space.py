"""The search space at work: suggesting a trial's params, the smallest model the space can build (so a
space where nothing fits the cap is refused up front), and a point it can draw that can never run."""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator

import optuna

from facenet.errors import ConfigError

from .schema import ParamSpec, SpecError, StudySpec, dependency_order

SUGGEST: dict[str, Callable[[optuna.trial.BaseTrial, ParamSpec], Any]] = {
    "float": lambda t, p: t.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log),
    "int": lambda t, p: t.suggest_int(p.name, p.low, p.high, step=p.step or 1, log=p.log),
    "categorical": lambda t, p: t.suggest_categorical(p.name, list(p.choices)),
}
MAX_COMBOS = 2000          # combinations smallest_param_count builds at most
MAX_STEPS = 16             # a stepped range with more values is represented by its endpoints


def suggest(trial: optuna.trial.BaseTrial, space: dict[str, ParamSpec], fixed: dict[str, Any]) -> dict[str, Any]:
    """The trial's params: each space param, in dependency order, suggested only while its ``when`` holds."""
    values, params = dict(fixed), {}
    for name in dependency_order(space):
        param = space[name]
        if param.active(values):
            params[name] = values[name] = SUGGEST[param.type](trial, param)
    return params


def _candidates(param: ParamSpec, endpoints: bool) -> list:
    """Values to try for the count: all of a categorical or a short stepped range, else the endpoints."""
    values = param.grid_values()
    if param.type == "categorical" or values is not None and len(values) <= MAX_STEPS and not endpoints:
        return values
    return [param.low, param.high]


def _points(space: dict[str, ParamSpec], names: list[str], fixed: dict[str, Any],
            endpoints: bool) -> Iterator[dict[str, Any]]:
    """Every combination of the candidates of ``names`` (dependency order) that the ``when`` rules allow."""
    def walk(i: int, point: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if i == len(names):
            yield dict(point)
            return
        param = space[names[i]]
        if not param.active({**fixed, **point}):
            yield from walk(i + 1, point)
            return
        for value in _candidates(param, endpoints):
            point[param.name] = value
            yield from walk(i + 1, point)
        del point[param.name]

    return walk(0, {})


def _needed(space: dict[str, ParamSpec], fields: tuple[str, ...] | None = None) -> list[str]:
    """The params of ``fields`` (default: the shaping ones) in the space plus every param their ``when``
    depends on, in dependency order."""
    if fields is None:
        from facenet.models.registry import SHAPE_FIELDS as fields

    needed, todo = set(), [n for n in fields if n in space]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(ref for ref in space[name].when if ref in space)
    return [n for n in dependency_order(space) if n in needed]


def points_over(spec: StudySpec, fields: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """The combinations the space draws for ``fields`` (and the params enabling them): every choice and
    short stepped range, the endpoints of the rest; at most ``MAX_COMBOS``. One empty point when none is
    searched."""
    names = _needed(spec.space, fields)
    return itertools.islice(_points(spec.space, names, spec.fixed, False), MAX_COMBOS)


def distinct_configs(spec: StudySpec, fields: tuple[str, ...]) -> Iterator[tuple[dict[str, Any], Any]]:
    """(point, config) for each combination ``points_over`` gives whose ``fields`` differ from those seen."""
    base, seen = spec.base_config(), set()
    for point in points_over(spec, fields):
        config = base.replace(**point)
        key = tuple(getattr(config, f) for f in fields)
        if key not in seen:
            seen.add(key)
            yield point, config


def smallest_param_count(spec: StudySpec) -> tuple[int, dict[str, Any]]:
    """The smallest parameter count the space reaches, and the params (shaping ones and what enables them)
    that reach it. Continuous ranges count at their endpoints; at most ``MAX_COMBOS`` models are built."""
    from facenet.models import count_params   # memoised per model shape

    base = spec.base_config()
    names = _needed(spec.space)
    # too many combinations with every stepped value: try the endpoints of numeric ranges only
    endpoints = sum(1 for _ in itertools.islice(_points(spec.space, names, spec.fixed, False), MAX_COMBOS + 1)) \
        > MAX_COMBOS
    best: tuple[int, dict[str, Any]] | None = None
    error: ConfigError | None = None
    for point in itertools.islice(_points(spec.space, names, spec.fixed, endpoints), MAX_COMBOS):
        try:
            count = count_params(base.replace(**point))
        except ConfigError as e:   # a combination that cannot be built cannot run either
            error = error or e
            continue
        if best is None or count < best[0]:
            best = (count, point)
    if best is None:
        raise SpecError.at(spec.source, "space", f"no configuration in the space builds a model: {error}")
    return best


def unrunnable_point(spec: StudySpec) -> tuple[dict[str, Any], ConfigError] | None:
    """A combination the space can draw that can never run (``facenet.runnable``), with its error, or None.
    Walks the params the checks read (and what enables them), at most ``MAX_COMBOS`` points."""
    from facenet.runnable import RUNNABLE_FIELDS, feasibility

    if not _needed(spec.space, RUNNABLE_FIELDS):
        return None
    for point, config in distinct_configs(spec, RUNNABLE_FIELDS):
        if (error := feasibility(config, spec.param_cap).error) is not None:
            return point, error
    return None
def combinations(space: dict[str, ParamSpec], fixed: dict[str, Any], fields: tuple[str, ...],
                 limit: int = MAX_COMBOS) -> list[dict[str, Any]]:
    """Every combination of the values ``fields`` can take in the space (with the params their ``when``
    depends on; continuous ranges at their endpoints, as for the parameter count), at most ``limit``."""
    names = _needed(space, fields)
    return list(itertools.islice(_points(space, names, fixed, False), limit))
