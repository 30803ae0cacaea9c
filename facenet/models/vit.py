"""TinyViT-11M (timm), randomly initialised, with a Linear embedding head.

timm's TinyViT pads each attention window, so it takes any input size: no resolution constraint
(tested from 32 to 224 px; its attention biases depend on the window size only, so neither does its
parameter count).
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import TrainConfig
from .registry import register


class TinyViTEmbedder(nn.Module):
    def __init__(self, n_out: int):
        super().__init__()
        import timm  # here, not at module import: timm's import costs ~0.5 s that only this model needs

        self.backbone = timm.create_model("tiny_vit_11m_224", pretrained=False, num_classes=0)
        self.embedding = nn.Linear(self.backbone.num_features, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.backbone(x))


@register("tiny_vit_11m")
def tiny_vit_11m(config: TrainConfig) -> nn.Module:
    return TinyViTEmbedder(config.n_out)
