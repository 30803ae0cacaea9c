"""Embedding networks by name, and their parameter count by the course's cap rule.

Every factory in ``MODELS`` takes a ``TrainConfig`` and returns an ``nn.Module`` mapping an
ImageNet-normalised float batch (B, 3, H, W) to embeddings (B, config.n_out), randomly initialised.
Factories build nothing until called; each model module registers itself in ``.registry``.
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..config import PARAM_CAP, TrainConfig
from ..errors import ConfigError
from . import efficientnet, mobilenet, resnet, vit  # noqa: F401  (they register themselves)
from .registry import BY_RESOLUTION, LAYOUTS, MODELS, SHAPE_FIELDS, WIDTHS, ModelFactory, register


def build_model(config: TrainConfig) -> nn.Module:
    """The embedding network of ``config.model``; unknown names raise ``UnknownName`` listing the known ones."""
    factory = MODELS.get(config.model)
    if config.model in WIDTHS and config.width <= 0:
        raise ConfigError(f"{config.model}: width must be > 0, got {config.width}")
    return factory(config)


class _SkipMetaInit(TorchFunctionMode):
    """Skips weight initialisation on meta tensors: there is nothing to fill, and torch's meta versions of
    ``normal_`` / ``clamp_`` go through slow Python references (they were over half of a meta build's time)."""

    OPS = frozenset({torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.erfinv_, torch.Tensor.clamp_})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.OPS and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


def count_params(config: TrainConfig) -> int:
    """Every parameter of the embedding network (backbone + embedding layer); loss weights are not in it.

    Built on the meta device (shapes only, no memory, a few milliseconds), once per shape
    (``SHAPE_FIELDS``; the resolution only for ``BY_RESOLUTION`` models) in a process; a shape that cannot be
    built raises ``ConfigError`` every time.
    """
    sized = config.model in BY_RESOLUTION
    return _shape_count(tuple(getattr(config, f) if f != "resolution" or sized else TrainConfig.resolution
                              for f in SHAPE_FIELDS))


@lru_cache(maxsize=None)
def _shape_count(shape: tuple) -> int:
    with torch.device("meta"), _SkipMetaInit():
        model = build_model(TrainConfig(**dict(zip(SHAPE_FIELDS, shape))))
    return sum(p.numel() for p in model.parameters())


def param_table(n_outs: tuple[int, ...] = (512,), cap: int = PARAM_CAP) -> list[dict]:
    """One row per model x plan width x (depth, block) x n_out; keys are the same in every row (None: n/a)."""
    rows = []
    for name in MODELS.names():
        for width in WIDTHS.get(name, (None,)):
            for depth, block in LAYOUTS.get(name, ((None, None),)):
                shape = {k: v for k, v in (("width", width), ("depth", depth), ("block", block)) if v is not None}
                for n_out in n_outs:
                    params = count_params(TrainConfig(model=name, n_out=n_out, **shape))
                    rows.append({"model": name, "width": width, "depth": depth, "block": block, "n_out": n_out,
                                 "params": params, "fits": params <= cap})
    return rows


__all__ = ["MODELS", "WIDTHS", "LAYOUTS", "SHAPE_FIELDS", "ModelFactory", "register", "build_model", "count_params",
           "param_table"]
