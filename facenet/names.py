"""Which ``TrainConfig`` fields hold registry names, and how to check one (for validators such as
search's spec checker). The registries pull in torch, so they are imported on the first check only."""
from __future__ import annotations

from typing import Callable

NAMED_FIELDS = ("model", "loss", "optimizer", "scheduler", "augment")


def _checks() -> dict[str, Callable[[str], object]]:
    from . import losses, models, optim
    from .data import augment

    return {"model": models.MODELS.get, "loss": losses.LOSSES.get, "optimizer": optim.OPTIMIZERS.get,
            "scheduler": optim.SCHEDULERS.get, "augment": augment.check_augment}


def check_name(field: str, value: str) -> None:
    """Raise ``UnknownName`` (listing the known names) unless ``value`` is a known name for ``field``."""
    if field in NAMED_FIELDS:
        _checks()[field](value)
