"""EfficientNet-B0 (torchvision) with a width multiplier; its Dropout + Linear classifier is the embedding layer."""
from __future__ import annotations

from torch import nn

from ..config import TrainConfig
from .registry import register


@register("efficientnet_b0", widths=(0.5, 0.75, 1.0, 1.25))
def efficientnet_b0(config: TrainConfig) -> nn.Module:
    from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf   # on first build (start-up)

    # the B0 block table scaled by width (channels rounded to multiples of 8); depth stays B0's
    blocks, last_channel = _efficientnet_conf("efficientnet_b0", width_mult=config.width, depth_mult=1.0)
    return EfficientNet(blocks, dropout=0.2, last_channel=last_channel, num_classes=config.n_out)
