"""Loading trained models for scoring, and (issue 5) exporting self-contained bundles."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch

from . import checkpoint
from .config import TrainConfig
from .errors import CheckpointError

BUNDLE_MODEL = "model.ts"


def _is_torchscript(path: Path) -> bool:
    return zipfile.is_zipfile(path) and any(n.endswith("/constants.pkl") or "/code/" in n
                                            for n in zipfile.ZipFile(path).namelist())


def load_embedder(path: str | Path, device: torch.device) -> tuple[torch.nn.Module, int]:
    """(model in eval mode, input resolution) from a checkpoint, a run folder or an export bundle."""
    path = Path(path)
    if path.is_dir():
        for name in (BUNDLE_MODEL, "best.pt", "last.pt"):
            if (path / name).is_file():
                return load_embedder(path / name, device)
        raise CheckpointError(f"{path}: no {BUNDLE_MODEL}, best.pt or last.pt inside; pass a run folder or bundle")
    if not path.is_file():
        raise CheckpointError(f"{path}: model file not found")
    if _is_torchscript(path):
        meta = json.loads((path.parent / "config.json").read_text()) if (path.parent / "config.json").exists() else {}
        model = torch.jit.load(str(path), map_location=device)
        return model.eval(), int(meta.get("resolution", TrainConfig.resolution))
    ckpt = checkpoint.load(path)
    if "config" not in ckpt:
        raise CheckpointError(f"{path}: checkpoint holds no config; use a facesearch best.pt/last.pt or a bundle")
    from .models import build_model

    config = TrainConfig.from_dict(ckpt["config"])
    model = build_model(config)
    checkpoint.load_strict(model, checkpoint.model_state(ckpt), path)
    return model.to(device).eval(), config.resolution
