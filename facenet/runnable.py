"""``check_runnable(config)``: the configurations that can never run, whatever the data; ``feasibility``:
that and the parameter cap, the one answer to "can this point train?" that the objective, the cost guard,
the planner, calibration and the spec checks all ask.

Each check builds the piece it is about on no data (a loss for two identities, an optimizer over one
scalar, the schedule, the augmentation) in milliseconds and lets its ``ConfigError`` through; it is
registered with the config fields it reads, so a search space can be walked over just those fields
(``RUNNABLE_FIELDS``) to find the combinations it would draw in vain. ``fit`` runs the same checks
before it touches any data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .config import PARAM_CAP, TrainConfig
from .errors import ConfigError

Check = Callable[[TrainConfig], None]
CHECKS: dict[str, tuple[Check, tuple[str, ...]]] = {}


def runnable_check(*fields: str) -> Callable[[Check], Check]:
    """Register a check reading ``fields`` of the config."""
    def deco(fn: Check) -> Check:
        CHECKS[fn.__name__] = (fn, fields)
        return fn
    return deco


@runnable_check("loss", "n_out", "n_per_class", "subcenters")
def loss(config: TrainConfig) -> None:
    from .losses import build_loss

    need = getattr(build_loss(config, 2), "min_per_class", 1)
    if config.n_per_class < need:
        raise ConfigError(f"loss {config.loss!r} needs n_per_class >= {need} (got {config.n_per_class}); "
                          f"set n_per_class={need}")


@runnable_check("optimizer", "nesterov", "momentum", "scheduler", "step_size", "t_max", "epochs", "t_0",
                "t_mult", "warmup_epochs")
def optimisation(config: TrainConfig) -> None:
    from .optim import OPTIMIZERS, build_scheduler

    optimizer = OPTIMIZERS.get(config.optimizer)([{"params": [torch.zeros(1, requires_grad=True)]}], config)
    build_scheduler(optimizer, config, steps_per_epoch=1)


@runnable_check("augment", "mixup_alpha", "cutmix_alpha")
def augmentation(config: TrainConfig) -> None:
    from .data.augment import build_augment

    build_augment(config)


RUNNABLE_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(f for _, fields in CHECKS.values() for f in fields))


def check_runnable(config: TrainConfig) -> None:
    """Raise ``ConfigError`` (one line: what cannot run and the fix) if ``config`` can never run."""
    for check, _ in CHECKS.values():
        check(config)


@dataclass(frozen=True)
class Feasibility:
    """Whether a config can train: ``error`` when it can never run, else its parameter count against ``cap``."""
    cap: int
    param_count: int | None = None    # None: not runnable (the count may not even be defined)
    error: ConfigError | None = None

    @property
    def runnable(self) -> bool:
        return self.error is None

    @property
    def over_cap(self) -> bool:
        return self.param_count is not None and self.param_count > self.cap

    @property
    def trains(self) -> bool:
        return self.runnable and not self.over_cap

    @property
    def reason(self) -> str:
        """Why it does not train ("" when it does)."""
        if self.error is not None:
            return f"cannot run: {self.error}"
        if self.over_cap:
            return f"{self.param_count:,} parameters over the {self.cap:,} cap"
        return ""


def feasibility(config: TrainConfig, cap: int = PARAM_CAP) -> Feasibility:
    """Can ``config`` train under ``cap``? No data read; the count is built once per model shape."""
    from .models import count_params

    try:
        check_runnable(config)
        return Feasibility(cap, count_params(config))
    except ConfigError as e:
        return Feasibility(cap, error=e)
