"""A trial's cost before it runs: ``setup + epochs x (images per epoch / train rate + val images / eval
rate + checkpoint writes)``, from a calibration entry and the data size.

Images per epoch is the course sampler's own count for the config (identities per batch x images
each x batches, at most ``max_img_per_cls`` per identity, over the ``max_identities`` subset).
"""
from __future__ import annotations

from typing import Any

from facenet.config import TrainConfig

from ..record import Estimate
from .datasize import DataSizes

__all__ = ["Estimate", "estimate"]


_EPOCH_IMAGES: dict[tuple, int] = {}


def images_per_epoch(config: TrainConfig, sizes: DataSizes) -> int:
    """The sampler's images per epoch for ``config`` on its training folder (cached per sampler setting)."""
    from facenet.data.sampler import training_set

    train = sizes.train(config.train_path)
    key = (train.counts, config.batch_size, config.n_per_class, config.max_img_per_cls, config.max_identities)
    if key not in _EPOCH_IMAGES:
        _EPOCH_IMAGES[key] = training_set(train.labels, config.batch_size, config.n_per_class,
                                          config.max_img_per_cls, 0, config.max_identities).images_per_epoch
    return _EPOCH_IMAGES[key]


def estimate(config: TrainConfig, speed: dict[str, Any], sizes: DataSizes, rates: str = "measured",
             point: str = "") -> Estimate:
    """The cost of training ``config`` to its last epoch at ``speed`` (a ``facenet.probe.Speed`` dict)."""
    n = images_per_epoch(config, sizes)
    val = sizes.val_images(config)
    epoch = n / speed["train_images_per_s"] + val / speed["eval_images_per_s"] + speed["checkpoint_s"]
    return Estimate(config.epochs, n, val, speed["setup_s"], epoch, rates, point)
