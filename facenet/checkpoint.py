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
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    buffer = io.BytesIO()
    torch.save(obj, buffer)   # serialise first: a plain file write reports a full disk as ENOSPC
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}; "
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
