"""The study language: one YAML file per phase of the plan -> a validated ``StudySpec``.

``schema`` (the spec's dataclasses), ``reader`` (YAML, ``${VAR}``, type checks), ``units``
(``11.5M``, ``2h``), ``parse`` (sections and cross-checks), ``components`` (samplers and pruners
by name), ``space`` (suggesting params, the smallest model, points that cannot run), ``chain``
(``from:`` an earlier phase).
"""
from .chain import apply_from
from .components import PRUNERS, SAMPLERS, build_pruner, build_sampler
from .parse import load_spec, parse_spec
from .schema import PARAM_CAP, FromSpec, ParamSpec, SpecError, StudySpec
from .space import smallest_param_count, suggest, unrunnable_point
from .units import parse_count, parse_duration

__all__ = ["apply_from", "PRUNERS", "SAMPLERS", "build_pruner", "build_sampler", "load_spec", "parse_spec",
           "PARAM_CAP", "FromSpec", "ParamSpec", "SpecError", "StudySpec", "smallest_param_count", "suggest",
           "unrunnable_point", "parse_count", "parse_duration"]
