"""MobileNetV2 (torchvision) with a width multiplier; its last Linear is the embedding layer."""
from __future__ import annotations

from torch import nn

from ..config import TrainConfig
from .registry import register


@register("mobilenet_v2", widths=(0.5, 0.75, 1.0, 1.4))
def mobilenet_v2(config: TrainConfig) -> nn.Module:
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2   # on first build (start-up time)

    return tv_mobilenet_v2(weights=None, width_mult=config.width, num_classes=config.n_out)
