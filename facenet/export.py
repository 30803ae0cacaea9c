"""Self-contained export bundles, and loading any trained model for scoring.

A bundle is a folder: ``model.ts`` (TorchScript), ``model.onnx``, ``config.json`` and
``MODEL_CARD.md``. ONNX needs the ``export`` extra (onnx, onnxscript, onnxruntime); without it a bundle
holds TorchScript only (``onnx=False``, as the quickstart writes on a core install).
Loading it needs only torch or onnxruntime: both models map ImageNet-normalised RGB float
images (N, 3, R, R) to embeddings (N, n_out); the score of a pair is the cosine similarity of its two
embeddings.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np

import torch

from . import checkpoint
from .config import PARAM_CAP, TrainConfig
from .errors import CheckpointError
from .extras import missing_modules, require_extra

BUNDLE_MODEL = "model.ts"
ONNX_TOLERANCE = 1e-4
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")   # torch's dynamo exporter needs the first two


def onnx_available() -> bool:
    return not missing_modules(*ONNX_MODULES)


def _is_torchscript(path: Path) -> bool:
    return zipfile.is_zipfile(path) and any(n.endswith("/constants.pkl") or "/code/" in n
                                            for n in zipfile.ZipFile(path).namelist())


def load_embedder(path: str | Path, device: torch.device) -> tuple[torch.nn.Module, TrainConfig]:
    """(model in eval mode, its training config) from a checkpoint, a run folder or an export bundle."""
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location=device)
        config = TrainConfig.from_dict(meta.get("config", {}))
        return model.eval(), config.replace(resolution=int(meta.get("resolution", config.resolution)))
    ckpt = checkpoint.load(path)
    if "config" not in ckpt:
        raise CheckpointError(f"{path}: checkpoint holds no config; use a facesearch best.pt/last.pt or a bundle")
    from .models import build_model

    config = TrainConfig.from_dict(ckpt["config"])
    model = build_model(config)
    checkpoint.load_strict(model, checkpoint.model_state(ckpt), path)
    return model.to(device).eval(), config


def export_bundle(run: str | Path, out: str | Path, cap: int = PARAM_CAP, provenance: dict | None = None,
                  onnx: bool = True) -> dict:
    """Write a bundle for the best checkpoint of ``run``; returns what the model card says.

    The ONNX model is checked under onnxruntime against torch (max abs difference <= 1e-4)
    before anything is written to ``out``; the folder appears whole or not at all.
    ``onnx=False`` writes TorchScript only (no export extra needed).
    """
    if onnx:
        require_extra("export", "ONNX export", *ONNX_MODULES)
    from .models import count_params

    run = Path(run)
    source = run / "best.pt" if run.is_dir() else run
    model, config = load_embedder(source, torch.device("cpu"))
    ckpt, resolution = checkpoint.load(source), config.resolution
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    example = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # TorchScript is deprecated upstream, still what users load
        reference = model(example).numpy()
        traced = torch.jit.trace(model, example)
    traced.save(str(tmp / BUNDLE_MODEL))
    diff = _export_onnx(model, example, reference, tmp / "model.onnx", source) if onnx else None

    params = count_params(config)
    card = {
        "architecture": config.model, "width": config.width, "n_out": config.n_out, "loss": config.loss,
        "parameters": params, "cap": cap, "fits_cap": params <= cap, "val_eer": ckpt.get("val_eer"),
        "epoch": ckpt.get("epoch"), "train_path": config.train_path, "val_path": config.val_path,
        "initial_model": config.initial_model or None, "resolution": resolution, "onnx_max_abs_diff": diff,
        "exported": dt.datetime.now().isoformat(timespec="seconds"), "source": str(source), **(provenance or {}),
    }
    meta = {"resolution": resolution, "input": "RGB float (N, 3, R, R), ImageNet-normalised",
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "card": card, "config": config.to_dict()}
    (tmp / "config.json").write_text(json.dumps(meta, indent=2))
    (tmp / "MODEL_CARD.md").write_text(model_card(card))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return card


def _export_onnx(model: torch.nn.Module, example: torch.Tensor, reference: np.ndarray, path: Path,
                 source: Path) -> float:
    """Write ``path`` and return its max abs difference from torch's ``reference``; over the tolerance, the
    partial bundle folder is removed and nothing is written."""
    import onnxruntime as ort

    torch.onnx.export(model, (example,), str(path), input_names=["images"],
                      output_names=["embeddings"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                      dynamo=True, external_data=False, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diff = float(np.abs(session.run(None, {"images": example.numpy()})[0] - reference).max())
    if diff > ONNX_TOLERANCE:
        shutil.rmtree(path.parent)
        raise CheckpointError(f"{source}: ONNX export differs from torch by {diff:.2e} (> {ONNX_TOLERANCE}); "
                              "not written")
    return diff


def model_card(card: dict) -> str:
    eer = f"{card['val_eer']:.2f}%" if card.get("val_eer") is not None else "n/a"
    lines = [
        f"# Face-embedding model: {card['architecture']}",
        "",
        "| | |", "|---|---|",
        f"| architecture | {card['architecture']} (width {card['width']}) |",
        f"| embedding size | {card['n_out']} |",
        f"| loss | {card['loss']} |",
        f"| parameters (cap rule) | {card['parameters']:,} of {card['cap']:,} "
        f"({'fits' if card['fits_cap'] else 'OVER the cap'}) |",
        f"| val EER | {eer} (epoch {card.get('epoch')}) |",
        f"| trained on | {card['train_path']}"
        + (f" (from {card['initial_model']})" if card.get("initial_model") else "") + " |",
        f"| validated on | {card['val_path']} |",
        f"| input | RGB, {card['resolution']}x{card['resolution']}, ImageNet mean/std |",
    ]
    if card.get("onnx_max_abs_diff") is not None:   # a TorchScript-only bundle has none
        lines.append(f"| ONNX vs torch | max abs difference {card['onnx_max_abs_diff']:.1e} |")
    if card.get("study"):
        lines.append(f"| study / trial | {card['study']} / {card.get('trial')} |")
    has_onnx = card.get("onnx_max_abs_diff") is not None
    onnx = " or `onnxruntime.InferenceSession('model.onnx')`" if has_onnx else ""
    lines += [f"| exported | {card['exported']} |", "",
              f"Load with `torch.jit.load('model.ts')`{onnx}; "
              "score a pair by the cosine similarity of its embeddings. No pretrained weights or external data.", ""]
    return "\n".join(lines)
