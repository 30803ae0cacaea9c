"""Channel / spatial attention modules inserted into residual blocks.

Each takes the channel count of the feature map it gates and returns a map of the same shape.
"""
from __future__ import annotations

import torch
from torch import nn


def _hidden(channels: int, reduction: int) -> int:
    # narrow nets (width 0.125) would squeeze 8 channels to 0 otherwise
    return max(channels // reduction, 1)


class SqueezeExcite(nn.Module):
    """SE (Hu et al. 2018): global-average-pool -> bottleneck MLP -> sigmoid channel gate."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = _hidden(channels, reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class ChannelGate(nn.Module):
    """CBAM's channel half: one shared MLP over the average- and the max-pooled descriptor."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = _hidden(channels, reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        return x * torch.sigmoid(logits)[:, :, None, None]


class SpatialGate(nn.Module):
    """CBAM's spatial half: a 7x7 conv over the channel-wise mean and max maps."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nn.Sequential):
    """CBAM (Woo et al. 2018): channel attention, then spatial attention."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__(ChannelGate(channels, reduction), SpatialGate(kernel_size))
