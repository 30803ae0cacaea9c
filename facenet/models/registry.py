"""The model registry, apart from the models (as timm keeps its own): each model module registers
itself here, and ``facenet.models`` imports them all, so nothing imports back what imports it."""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..config import TrainConfig
from ..registry import Registry

ModelFactory = Callable[[TrainConfig], nn.Module]

MODELS: Registry[ModelFactory] = Registry("model")
# models whose size follows config.width -> the widths the experiment plan tries (others ignore width)
WIDTHS: dict[str, tuple[float, ...]] = {}
# models whose size follows config.depth and config.block -> the (depth, block) pairs the plan tries
LAYOUTS: dict[str, tuple[tuple[int, str], ...]] = {}
# the TrainConfig fields a model's parameter count can depend on (the rest never change it)
SHAPE_FIELDS = ("model", "width", "depth", "block", "n_out", "resolution")
# models whose parameter count follows config.resolution (e.g. learned position embeddings per patch); the others
# pool globally, so a count at one resolution holds at all (planning re-prices proxies at many resolutions)
BY_RESOLUTION: set[str] = set()


def register(name: str, widths: tuple[float, ...] = (), layouts: tuple[tuple[int, str], ...] = (),
             by_resolution: bool = False) -> Callable[[ModelFactory], ModelFactory]:
    """``MODELS.register`` that also records which of width / depth / block (and resolution) the model takes."""
    def deco(fn: ModelFactory) -> ModelFactory:
        MODELS.register(name)(fn)
        if by_resolution:
            BY_RESOLUTION.add(name)
        if widths:
            WIDTHS[name] = widths
        if layouts:
            LAYOUTS[name] = layouts
        return fn

    return deco
