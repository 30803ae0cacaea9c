"""ResNets: torchvision's resnet18/34 (the course baseline) and our own ResNet for attention and width.

Our ``ResNet`` keeps torchvision's module names (conv1, bn1, layer1..4, fc, downsample), so at width 1.0
its state dict has the same keys and shapes as torchvision's and weights move between them.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError
from .registry import register
from .attention import CBAM, SqueezeExcite

Attention = Callable[[int], nn.Module]  # channels -> gate module

BASE_WIDTHS = (64, 128, 256, 512)
STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}  # torchvision's layouts


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)


def _downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(*_conv_bn(cin, cout, 1, stride))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, attention: Attention | None):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, width, 3, stride)
        self.conv2, self.bn2 = _conv_bn(width, width, 3)
        self.relu = nn.ReLU(inplace=True)
        self.attention = attention(width) if attention else nn.Identity()
        self.downsample = _downsample(cin, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.attention(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv), as torchvision's resnet50."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, attention: Attention | None):
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = _conv_bn(cin, width, 1)
        self.conv2, self.bn2 = _conv_bn(width, width, 3, stride)
        self.conv3, self.bn3 = _conv_bn(width, cout, 1)
        self.relu = nn.ReLU(inplace=True)
        self.attention = attention(cout) if attention else nn.Identity()
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.attention(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """Stem, four stages, global average pool, and ``fc``: the embedding layer (last width x expansion -> n_out).

    ``attention`` (if any) gates each block's residual branch just before the addition.
    """

    def __init__(self, block: str, stage_blocks: tuple[int, ...], widths: tuple[int, ...], n_out: int,
                 attention: Attention | None = None):
        super().__init__()
        block_cls = BLOCKS[block]
        self.conv1, self.bn1 = _conv_bn(3, widths[0], 7, stride=2)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = widths[0]
        for i, (count, width) in enumerate(zip(stage_blocks, widths)):
            blocks = []
            for j in range(count):
                blocks.append(block_cls(cin, width, 2 if j == 0 and i > 0 else 1, attention))
                cin = width * block_cls.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, n_out)
        for m in self.modules():  # torchvision's conv initialisation, so both ResNet18s start alike
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def scaled_widths(width: float) -> tuple[int, ...]:
    """Stage widths times ``width``, rounded to a multiple of 8 (at least 8) for efficient kernels."""
    return tuple(max(8, round(c * width / 8) * 8) for c in BASE_WIDTHS)


@register("resnet18")
def resnet18(config: TrainConfig) -> nn.Module:
    """The course baseline: torchvision ResNet18, its last fc the embedding layer (512 -> n_out)."""
    from torchvision.models import resnet18 as tv_resnet18   # on first build: torchvision adds ~1 s to start-up

    return tv_resnet18(weights=None, num_classes=config.n_out)


@register("resnet34")
def resnet34(config: TrainConfig) -> nn.Module:
    from torchvision.models import resnet34 as tv_resnet34

    return tv_resnet34(weights=None, num_classes=config.n_out)


@register("resnet18_se")
def resnet18_se(config: TrainConfig) -> nn.Module:
    return ResNet("basic", STAGE_BLOCKS[18], BASE_WIDTHS, config.n_out, attention=SqueezeExcite)


@register("resnet18_cbam")
def resnet18_cbam(config: TrainConfig) -> nn.Module:
    return ResNet("basic", STAGE_BLOCKS[18], BASE_WIDTHS, config.n_out, attention=CBAM)


@register("resnet_w", widths=(0.25, 0.5, 0.75, 1.0), layouts=((18, "basic"), (34, "basic"), (50, "bottleneck")))
def resnet_w(config: TrainConfig) -> nn.Module:
    """A ResNet of any width; ``depth`` picks torchvision's stage layout, ``block`` the block type.

    Depth names the layout of torchvision's model of that depth: 18 = (2, 2, 2, 2), 34 and 50 = (3, 4, 6, 3);
    so (34, bottleneck) is (50, bottleneck), and (18, bottleneck) is a 26-layer net.
    """
    if config.block not in BLOCKS:
        raise ConfigError(f"resnet_w: block must be one of {', '.join(BLOCKS)}, got {config.block!r}")
    if config.depth not in STAGE_BLOCKS:
        raise ConfigError(f"resnet_w: depth must be one of {', '.join(map(str, STAGE_BLOCKS))}, got {config.depth}")
    if config.depth == 50 and config.block != "bottleneck":
        raise ConfigError("resnet_w: depth 50 needs block=bottleneck (with basic blocks that layout is depth 34)")
    return ResNet(config.block, STAGE_BLOCKS[config.depth], scaled_widths(config.width), config.n_out)
