"""A trial's cost before it runs: ``setup + epochs x (images per epoch / train rate + val images / eval
rate + checkpoint writes)``, from a calibration entry and the data size.

Images per epoch is the course sampler's own count for the config (identities per batch x images
each x batches, at most ``max_img_per_cls`` per identity, over the ``max_identities`` subset).
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

from facenet.config import TrainConfig

from .datasize import DataSizes


@dataclass(frozen=True)
class Estimate:
    epochs: int
    images_per_epoch: int
    val_images: int
    setup_s: float
    epoch_s: float                   # training + evaluation + checkpoint writes, per epoch
    rates: str = "measured"          # or how a nearby calibration entry was used
    point: str = ""                  # the calibration point (device and speed key) it was priced at
    scale: float = 1.0               # times the calibration's rates: what this point's recent trials showed

    def rescaled(self, factor: float, trials: int) -> "Estimate":
        """The estimate with its times multiplied by ``factor`` (measured over ``trials`` recent trials)."""
        return dataclasses.replace(self, setup_s=self.setup_s * factor, epoch_s=self.epoch_s * factor,
                                   scale=factor, rates=f"{self.rates}, x{factor:.2f} (last {trials} trials)")

    @property
    def seconds(self) -> float:
        return self.for_epochs(self.epochs)

    def for_epochs(self, epochs: int) -> float:
        """The cost of the first ``epochs`` epochs (a pruned trial's share)."""
        return self.setup_s + epochs * self.epoch_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Estimate":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


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
