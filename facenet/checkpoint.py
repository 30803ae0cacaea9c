"""Checkpoints: written atomically, loaded with ``weights_only=True``."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError


def save_atomic(obj: Any, path: str | Path) -> None:
    """Write to a temporary file and rename, so the previous checkpoint survives a failed write."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)   # serialise first: a plain file write reports a full disk as ENOSPC
    write_atomic(path, buffer.getbuffer(), "checkpoint")


def write_atomic(path: str | Path, data: bytes | memoryview, what: str = "file") -> None:
    """Write ``data`` to a temporary file and rename it into place: no reader sees half a file, and a full
    disk leaves no debris, only a one-line ``CheckpointError``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {what} {path}: {e.strerror or e}; "
                              f"free disk space or choose a writable run folder") from None


def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, foreign pickle, not a checkpoint at all
        raise CheckpointError(f"{path}: not a readable facesearch checkpoint ({type(e).__name__})") from None


def model_state(ckpt: dict) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint file's content (full training checkpoint or bare state dict)."""
    return ckpt.get("model", ckpt)


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load every weight or fail naming the first differing keys (e.g. another architecture)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", shape)):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}")
        raise CheckpointError(f"{source}: weights do not match this model ({'; '.join(parts)}); "
                              f"was it trained with another architecture or n_out?")
    module.load_state_dict(state)


def load_partial(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Fine-tuning start: copy every weight whose name and shape match; return (loaded, skipped)."""
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(usable, strict=False)
    skipped = sorted(set(own) - set(usable))
    return sorted(usable), skipped


# ---------------------------------------------------------------- random state
def device_generator(device: torch.device) -> torch.Generator | None:
    """The default generator of a CUDA ``device``; None elsewhere (the CPU's is saved anyway)."""
    if device.type != "cuda":
        return None
    torch.cuda.init()   # the per-device generators exist once CUDA is initialised
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.default_generators[index]


def rng_state(device: torch.device) -> dict:
    """torch's CPU generator and the run's own device generator, not every GPU's by index: a run
    resumed under another set of visible GPUs restores into the generator of the device it runs on."""
    generator = device_generator(device)
    return {"cpu": torch.get_rng_state(),
            "device": {"type": device.type, "state": generator.get_state()} if generator is not None else {}}


def restore_rng(state: dict | torch.Tensor, device: torch.device, legacy_cuda: list | None = None) -> None:
    """Put back what ``rng_state`` saved; a device state saved on another device type is left out.

    Checkpoints written before the per-device format hold the CPU state as a tensor and a list
    of every visible GPU's state (``legacy_cuda``): its one entry is the run's own when the run
    saw a single GPU (a worker's case); otherwise which one was the run's is unknown, and the
    device generator keeps its seed.
    """
    if isinstance(state, torch.Tensor):
        legacy = legacy_cuda or []
        state = {"cpu": state, "device": {"type": "cuda", "state": legacy[0]} if len(legacy) == 1 else {}}
    torch.set_rng_state(state["cpu"])
    saved = state["device"]
    generator = device_generator(device) if saved and saved["type"] == device.type else None
    if generator is not None:
        generator.set_state(saved["state"])
