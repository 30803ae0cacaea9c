"""Which device a process trains on, and what that device may do.

- ``resolve_device(name)`` checks a device name against the visible GPUs and makes a CUDA device
  the process's current one (``use_device``): streams, events, pinned memory and RNG calls that
  take no device then mean this GPU, and no stray context opens on GPU 0.
- ``worker_gpu_env(index)``: the environment of a worker process that should run on the parent's
  GPU ``index``, mapped through the parent's own ``CUDA_VISIBLE_DEVICES`` (a scheduler's mask).
- ``amp_dtype``: bf16 only where the GPU runs it natively (compute capability 8.0 or later);
  fp16 with a gradient scaler elsewhere (V100, T4), where bf16 would be emulated.
- ``copy_done``: a blocking event after a host-to-device copy, on the right device's stream.
- ``PinnedStaging``: reused pinned buffers for host-to-device copies that overlap compute.
- ``reset_compiler``: forget torch.compile's graphs between runs in one process.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import torch

from .errors import ConfigError

MASK = "CUDA_VISIBLE_DEVICES"
ORDER = "CUDA_DEVICE_ORDER"


# ---------------------------------------------------------------- which GPU
def visible_gpus(env: Mapping[str, str] | None = None) -> list[str] | None:
    """The entries of ``CUDA_VISIBLE_DEVICES`` (indices, ``GPU-`` or ``MIG-`` UUIDs); None when unset."""
    env = os.environ if env is None else env
    if MASK not in env:
        return None
    entries = [e.strip() for e in env[MASK].split(",")]
    visible = []
    for e in entries:   # CUDA stops at the first invalid entry: '-1' or '' hide everything after
        if not e or e.startswith("-"):
            break
        visible.append(e)
    return visible


def worker_gpu_env(index: int, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables to add to the environment of a worker that should use the parent's GPU ``index``.

    ``index`` counts the GPUs this process sees (what ``--gpus`` and ``torch.cuda`` number), so
    under a scheduler's mask of ``2,3`` index 1 is physical GPU 3. The order is PCI bus order,
    as nvidia-smi and schedulers number GPUs, unless the parent already chose one (its mask was
    written in that order). The worker then sees exactly one GPU: its ``cuda:0``.
    """
    env = os.environ if env is None else env
    visible = visible_gpus(env)
    if index < 0 or (visible is not None and index >= len(visible)):
        shown = f"{MASK}={env[MASK]!r}, {len(visible)} GPU(s)" if visible is not None else "no mask"
        raise ConfigError(f"GPU index {index}: not a GPU this process sees ({shown}); "
                          f"use indices from 0 to the number of visible GPUs - 1")
    return {MASK: visible[index] if visible is not None else str(index),
            ORDER: env.get(ORDER) or "PCI_BUS_ID"}


_current: torch.device | None = None   # the device use_device last made current in this process


def use_device(device: torch.device) -> torch.device:
    """Make ``device`` this process's device (CUDA: ``set_device`` once, cuDNN autotuning on).

    Returns the device with its index made explicit (``cuda`` -> ``cuda:N``), so that every
    stream, event and generator lookup later names it.
    """
    global _current
    if device.type != "cuda":
        return device
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if _current != device:
        torch.cuda.set_device(device)
        _current = device
    configure_backends(device)
    return device


def configure_backends(device: torch.device) -> None:
    """Shapes never change within a run, so cuDNN may time its algorithms once and keep the fastest."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def resolve_device(name: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` -> a device that exists, made current on CUDA."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        n = torch.cuda.device_count()
        if n == 0:
            raise ConfigError(f"device {name!r}: no CUDA GPU is visible; use device=cpu or auto")
        if (device.index or 0) >= n:
            raise ConfigError(f"device {name!r}: only {n} GPU(s) visible (0..{n - 1})")
    return use_device(device)


# ---------------------------------------------------------------- precision
def native_bf16(capability: tuple[int, int]) -> bool:
    """bf16 tensor cores exist from Ampere (8.0) on; ROCm GPUs run bf16 natively too."""
    return bool(torch.version.hip) or capability[0] >= 8


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype on ``device``: None on CPU (fp32 there), bf16 where native, else fp16."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if native_bf16(torch.cuda.get_device_capability(device)) else torch.float16


def autocast_for(device: torch.device, enabled: bool = True):
    """Autocast in ``amp_dtype(device)`` when ``enabled``; a no-op on CPU."""
    dtype = amp_dtype(device) if enabled else None
    if dtype is None:
        return torch.autocast("cpu", enabled=False)
    return torch.autocast(device.type, dtype=dtype)


# ---------------------------------------------------------------- copies
def copy_done(device: torch.device) -> "torch.cuda.Event":
    """An event that completes once the work queued so far on ``device``'s current stream has run.

    Blocking: a thread that waits on it sleeps instead of spinning a core.
    """
    event = torch.cuda.Event(blocking=True)
    event.record(torch.cuda.current_stream(device))
    return event


class PinnedStaging:
    """Host-to-device copies through two reused pinned buffers (CUDA); a plain copy elsewhere.

    A copy from pinned memory runs asynchronously, so the host prepares the next batch while
    the GPU copies and computes; a buffer is refilled only once its previous copy has run.
    """

    def __init__(self, device: torch.device, shape: tuple[int, ...], dtype: torch.dtype = torch.uint8):
        self.device = device
        self.cuda = device.type == "cuda"
        n = 2 if self.cuda else 0
        self.buffers = [torch.empty(shape, dtype=dtype, pin_memory=True) for _ in range(n)]
        self.events: list = [None] * n
        self.turn = 0

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        if not self.cuda:
            return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        k, self.turn = self.turn, 1 - self.turn
        if self.events[k] is not None:
            self.events[k].synchronize()
        host = self.buffers[k][:len(array)]
        np.copyto(host.numpy(), array)
        x = host.to(self.device, non_blocking=True)
        self.events[k] = copy_done(self.device)
        return x


# ---------------------------------------------------------------- compile
def reset_compiler() -> None:
    """Drop torch.compile's cached graphs and guards (and the parameters they hold on to).

    Each run compiles a new model; without a reset the graphs of earlier runs in the same
    process stay cached, each new model counts as a recompile of the same code, and past
    Dynamo's recompile limit the model silently runs eagerly.
    """
    import torch._dynamo

    torch._dynamo.reset()
