"""Batch augmentations on NCHW float batches in [0, 1], on whatever device the batch lives.

Every op draws its per-image randomness as tensors from one ``torch.Generator`` on the
batch's device, so a whole batch is augmented in a handful of kernels (geometric ops are
one ``affine_grid`` + ``grid_sample`` with per-image matrices) and a run is reproducible
from its seed. What the host must know to launch those kernels (a mixing weight, a box,
which mixing op, policy seeds) comes from a second generator on the CPU: reading such a
number back from a GPU generator would stall the host until the GPU caught up, every step.
Both generators' states are saved with a run, so a resumed run draws what it would have.
Constant tensors are made once per device and dtype, not copied to the device per call.
ImageNet normalisation comes after, in the trainer.

``config.augment`` is a preset (``PRESETS``) or a '+'-joined list of presets and op names,
e.g. ``"conservative+occlusion"`` or ``"flip+rotate+erasing"``.

Op shapes (``AUGMENTATIONS`` holds factories ``fn(config, **strengths) -> op``), ``g`` the device
generator and ``host`` the CPU one:
- image ops: ``op(x, g, host) -> x``;
- mixing ops (``MIXING``: mixup, cutmix): ``op(x, g, host) -> (x, (perm, lam))``; the trainer
  then uses ``lam * loss(emb, labels) + (1 - lam) * loss(emb, labels[perm])``. When several
  mixing ops are listed, each batch uses one of them, chosen at random.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import did_you_mean
from ..registry import UnknownName
from .augment_ops import AUGMENTATIONS, LOADER_OPS, MIXING, PRESETS, Mix, Op, _host_uniform

# ---------------------------------------------------------------- building
def _expand(spec: str) -> list[tuple[str, dict[str, Any]]]:
    """'+'-joined presets and op names -> (op name, strengths) pairs; unknown names fail with all known ones."""
    ops: list[tuple[str, dict[str, Any]]] = []
    for name in [t.strip() for t in spec.split("+")] if spec.strip() else []:
        if name in PRESETS:
            ops.extend(PRESETS[name])
        elif name in AUGMENTATIONS or name in LOADER_OPS:
            ops.append((name, {}))
        else:
            raise UnknownName(f"unknown augmentation {name!r}{did_you_mean(name, augment_names())}; "
                              f"presets: {', '.join(PRESETS)}; ops: {', '.join([*LOADER_OPS, *AUGMENTATIONS.names()])}")
    return ops


def check_augment(spec: str) -> None:
    """Raise ``UnknownName`` unless ``spec`` is a valid ``config.augment`` value (for validators)."""
    _expand(spec)


def augment_names() -> list[str]:
    """Every name ``config.augment`` may join with '+': presets, then ops."""
    return [*PRESETS, *LOADER_OPS, *AUGMENTATIONS.names()]


def _stream_seed(seed: int, stream: int = 0) -> int:
    """A seed for augmentation's own streams (0: device, 1: host): the trainer seeds torch's global
    generator with ``seed`` itself, and a second generator with the same seed would replay the same draws."""
    key = (seed, 0xA06) if stream == 0 else (seed, 0xA06, stream)   # stream 0 keeps its earlier seed
    return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0]) >> 1   # numpy 1.x: no uint64 >> int


class Augment:
    """A config's image ops, applied in order to each training batch, then at most one mixing op.

    ``flip`` is the probability of a mirror, which the loader applies before all of them.
    """

    def __init__(self, ops: list[Op], mixers: list[Op], seed: int, spec: str = "", flip: float = 0.0):
        self.ops, self.mixers, self.seed, self.spec, self.flip = ops, mixers, seed, spec, flip
        self._generator: torch.Generator | None = None
        self._device: torch.device | None = None
        self._pending: dict | None = None      # device state loaded before the first batch named the device
        self.host = torch.Generator().manual_seed(_stream_seed(seed, 1))

    def __bool__(self) -> bool:
        return bool(self.ops or self.mixers)

    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._device != device:
            self._generator, self._device = torch.Generator(device=device).manual_seed(_stream_seed(self.seed)), device
            if self._pending and self._pending["device"] == device.type:
                self._generator.set_state(self._pending["state"])
            self._pending = None
        return self._generator

    def __call__(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, Mix | None]:
        """``labels`` is accepted for the trainer's contract; a mix returns ``perm`` for it to index them."""
        if not self:
            return x, None
        g = self.generator(x.device)
        for op in self.ops:
            x = op(x, g, self.host)
        if not self.mixers:
            return x, None
        pick = min(int(_host_uniform(self.host, 1)[0] * len(self.mixers)), len(self.mixers) - 1)
        return self.mixers[pick](x, g, self.host)

    def state_dict(self) -> dict:
        if not self:
            return {}
        device = dict(self._pending or {}) if self._generator is None else \
            {"device": self._device.type, "state": self._generator.get_state()}
        return {**device, "host": self.host.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Resume both random streams; a device state saved on another device type restarts that
        stream from the seed (the host stream always resumes)."""
        state = dict(state or {})
        if "host" in state:
            self.host.set_state(state.pop("host"))
        self._generator, self._pending = None, state or None

    def __repr__(self) -> str:
        return f"Augment({self.spec!r}, seed={self.seed})"


def build_augment(config) -> Augment:
    ops, mixers, flip = [], [], 0.0
    for name, strengths in _expand(config.augment):
        if name in LOADER_OPS:
            flip = LOADER_OPS[name]
        else:
            (mixers if name in MIXING else ops).append(AUGMENTATIONS.get(name)(config, **strengths))
    return Augment(ops, mixers, config.seed, config.augment, flip)
