"""Samplers and pruners by name: the spec section that names one, and the Optuna object it builds."""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from facenet.errors import did_you_mean

from .reader import SCALARS, Reader, kind_of
from .schema import SpecError, StudySpec

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
# the pruner's name is also the rule a trial it prunes records (record.PRUNED_BY)
PRUNERS = {"median": "MedianPruner", "percentile": "PercentilePruner", "hyperband": "HyperbandPruner",
           "successive_halving": "SuccessiveHalvingPruner", "threshold": "ThresholdPruner", "none": "NopPruner"}


def parse_component(r: Reader, raw: Any, path: str, classes: dict[str, str], module: str,
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
            r.fail(f"{path}.{key}", f"expected a single value, got {kind_of(value)}")
    return raw



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


# epochs are the resource: rungs known from the start instead of after the first complete trial ("auto")
PRUNER_DEFAULTS: dict[str, Callable[[StudySpec], dict[str, Any]]] = {
    "successive_halving": lambda spec: {"min_resource": 1},
    "hyperband": lambda spec: {"min_resource": 1, **({"max_resource": spec.epochs} if spec.epochs else {})},
}


def pruner_options(spec: StudySpec) -> dict[str, Any]:
    """The pruner's keyword arguments: the spec's, over the defaults for epochs as the resource."""
    name = spec.pruner["name"]
    given = {k: v for k, v in spec.pruner.items() if k != "name"}
    return {**PRUNER_DEFAULTS.get(name, lambda _: {})(spec), **given}


def build_pruner(spec: StudySpec):
    import optuna

    return getattr(optuna.pruners, PRUNERS[spec.pruner["name"]])(**pruner_options(spec))

