"""From cached uint8 images to model input.

The course's per-image Resize(256) happens once, in the decoded-image cache, and each
image's random crop and mirror happen in the loader's threads, on uint8
(``facenet.data.loader``). What is left runs on whole batches on the training device:
conversion to float, the float augmentations, then ImageNet scaling, in place.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def center_crop(x: torch.Tensor | np.ndarray, res: int) -> torch.Tensor | np.ndarray:
    """The central ``res`` x ``res`` window of NHWC images (a view)."""
    top = (x.shape[1] - res) // 2
    left = (x.shape[2] - res) // 2
    return x[:, top:top + res, left:left + res]


class ToFloat:
    """NHWC uint8 -> NCHW float in [0, 1], written into one buffer that is reused while the shape holds.

    On CPU a fresh float batch costs more than the conversion itself: 64 images at 224 px make
    38 MB, above glibc's mmap threshold, so every new one is page-faulted in again. The
    contract that buys the speed: a caller is done with one batch before it converts the next.
    """

    def __init__(self, channels_last: bool = False):
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.buffer: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w, c = x.shape
        b = self.buffer
        if b is None or b.shape != (n, c, h, w) or b.device != x.device:
            b = self.buffer = torch.empty((n, c, h, w), device=x.device, memory_format=self.memory_format)
        return b.copy_(x.permute(0, 3, 1, 2)).div_(255)


@functools.cache
def _imagenet(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    def stat(v):
        return torch.tensor(v, device=device, dtype=dtype).view(1, 3, 1, 1)
    return stat(IMAGENET_MEAN), stat(IMAGENET_STD)


def normalize_(x: torch.Tensor) -> torch.Tensor:
    """NCHW float in [0, 1] -> ImageNet-normalised, in place."""
    mean, std = _imagenet(x.device, x.dtype)
    return x.sub_(mean).div_(std)
