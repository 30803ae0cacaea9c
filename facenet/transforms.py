"""Batch-level crops and normalisation on NHWC uint8 batches, on whatever device they live.

The course's per-image Resize(256) happens once, in the decoded-image cache; what is left
per batch is a crop (random for training, centre for evaluation) and ImageNet scaling.
"""
from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def center_crop(x: torch.Tensor, res: int) -> torch.Tensor:
    top = (x.shape[1] - res) // 2
    left = (x.shape[2] - res) // 2
    return x[:, top:top + res, left:left + res]


def random_crop(x: torch.Tensor, res: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """An independent random ``res`` x ``res`` crop per image, as one gather."""
    b, h, w = x.shape[:3]
    oy = torch.randint(0, h - res + 1, (b, 1), generator=generator, device=generator.device if generator else "cpu")
    ox = torch.randint(0, w - res + 1, (b, 1), generator=generator, device=oy.device)
    ar = torch.arange(res, device=oy.device)
    rows, cols = (oy + ar).to(x.device), (ox + ar).to(x.device)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return x[batch, rows[:, :, None], cols[:, None, :]]


def to_float(x: torch.Tensor) -> torch.Tensor:
    """NHWC uint8 -> NCHW float in [0, 1]; the permuted view keeps channels-last memory order."""
    return x.permute(0, 3, 1, 2).float().div_(255)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """NCHW float in [0, 1] -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std
