"""Optimizers and learning-rate schedules, by name.

Schedules are stepped once per iteration by the trainer but keep the epoch semantics of
torch's per-epoch schedulers at epoch boundaries (StepLR decays exactly at multiples of
``step_size`` epochs, cosine / SGDR follow the closed forms of CosineAnnealingLR /
CosineAnnealingWarmRestarts). Each schedule is a multiplier of the iteration count; an
optional linear warm-up multiplies it, and one ``LambdaLR`` applies the product, so the
only state to resume is LambdaLR's iteration counter.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from .errors import ConfigError
from .registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULERS: Registry = Registry("scheduler")

Multiplier = Callable[[int], float]     # iteration -> lr / base lr

# Norm layers whose affine parameters are exempt from decay (BatchNorm*, InstanceNorm*, SyncBatchNorm
# derive from _NormBase; timm's norm layers derive from these).
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


# ---------------------------------------------------------------- optimizers
def _adam_family(cls: type[torch.optim.Optimizer]) -> Callable:
    def make(params, config) -> torch.optim.Optimizer:
        return cls(params, lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay)
    return make


for _name, _cls in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("radam", torch.optim.RAdam)):
    OPTIMIZERS.register(_name)(_adam_family(_cls))


@OPTIMIZERS.register("sgd")
def sgd(params, config) -> torch.optim.Optimizer:
    if config.nesterov and config.momentum <= 0:
        raise ConfigError(f"nesterov=true needs momentum > 0 (got momentum={config.momentum})")
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                           weight_decay=config.weight_decay)


def param_groups(modules: Iterable[nn.Module] | nn.Module, no_decay_norm_bias: bool) -> list[dict]:
    """Trainable parameters of ``modules`` (each once); with ``no_decay_norm_bias`` a second group
    holds norm-layer parameters and every bias / 1-d parameter, with weight_decay 0."""
    if isinstance(modules, nn.Module):
        modules = [modules]
    seen: set[int] = set()
    decay: list[nn.Parameter] = []
    exempt: list[nn.Parameter] = []
    for module in modules:
        for layer in module.modules():
            norm = isinstance(layer, _NORMS)
            for p in layer.parameters(recurse=False):
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    (exempt if no_decay_norm_bias and (norm or p.ndim <= 1) else decay).append(p)
    groups = [{"params": decay}, {"params": exempt, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(modules: Iterable[nn.Module] | nn.Module, config) -> torch.optim.Optimizer:
    """The optimizer ``config.optimizer`` over the model and the loss (which may own weights)."""
    groups = param_groups(modules, config.no_decay_norm_bias)
    if not groups:
        raise ConfigError("nothing to optimise: the model and loss have no trainable parameters")
    return OPTIMIZERS.get(config.optimizer)(groups, config)


# ---------------------------------------------------------------- schedules
def _at_least(config, name: str, low: float) -> None:
    if getattr(config, name) < low:
        raise ConfigError(f"scheduler {config.scheduler!r} needs {name} >= {low} (got {getattr(config, name)})")


def _floor(config) -> float:
    """eta_min as a fraction of the base lr."""
    return config.eta_min / config.lr if config.lr > 0 else 0.0


def _cosine(floor: float, done: float) -> float:
    return floor + (1 - floor) * (1 + math.cos(math.pi * done)) / 2


@SCHEDULERS.register("constant")
def constant(config, steps_per_epoch: int) -> Multiplier:
    return lambda it: 1.0


@SCHEDULERS.register("step")
def step(config, steps_per_epoch: int) -> Multiplier:
    """StepLR: multiply by ``lr_decay`` every ``step_size`` epochs."""
    _at_least(config, "step_size", 1)
    period, gamma = config.step_size * steps_per_epoch, config.lr_decay
    return lambda it: gamma ** (it // period)


@SCHEDULERS.register("cosine")
def cosine(config, steps_per_epoch: int) -> Multiplier:
    """CosineAnnealingLR to eta_min over ``t_max`` epochs (0: all epochs); periodic after, like torch's."""
    period = (config.t_max or config.epochs) * steps_per_epoch
    if period <= 0:
        raise ConfigError(f"scheduler 'cosine' needs t_max >= 1 or epochs >= 1 (got t_max={config.t_max}, "
                          f"epochs={config.epochs})")
    floor = _floor(config)
    return lambda it: _cosine(floor, it / period)


@SCHEDULERS.register("sgdr")
def sgdr(config, steps_per_epoch: int) -> Multiplier:
    """CosineAnnealingWarmRestarts: restarts after ``t_0`` epochs, each period ``t_mult`` times longer."""
    _at_least(config, "t_0", 1)
    _at_least(config, "t_mult", 1)
    first, mult, floor = config.t_0 * steps_per_epoch, config.t_mult, _floor(config)

    def multiplier(it: int) -> float:
        period = first
        while it >= period:       # integer iterations: restarts land exactly on epoch boundaries
            it -= period
            period *= mult
        return _cosine(floor, it / period)
    return multiplier


def build_scheduler(optimizer: torch.optim.Optimizer, config, steps_per_epoch: int) -> LambdaLR:
    """``config.scheduler`` with linear warm-up over ``config.warmup_epochs``; step once per iteration.

    Warm-up multiplies the schedule (whose clock starts at iteration 0, so epoch boundaries keep
    their meaning): iteration i of W warm-up iterations runs at (i + 1) / W of the scheduled lr.
    """
    if steps_per_epoch < 1:
        raise ConfigError(f"steps_per_epoch must be >= 1 (got {steps_per_epoch})")
    if config.warmup_epochs < 0:
        raise ConfigError(f"warmup_epochs must be >= 0 (got {config.warmup_epochs})")
    schedule = SCHEDULERS.get(config.scheduler)(config, steps_per_epoch)
    warmup = max(1, round(config.warmup_epochs * steps_per_epoch)) if config.warmup_epochs > 0 else 0
    if not warmup:
        return LambdaLR(optimizer, schedule)
    return LambdaLR(optimizer, lambda it: min(1.0, (it + 1) / warmup) * schedule(it))
