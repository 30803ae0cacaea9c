"""Scoring a pair list with a trained model: what ``score``, the retrain record and the quickstart share."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.folders import PairList
from ..devices import resolve_device
from ..export import load_embedder
from .evaluate import Verifier


def score_pairs(model: str | Path, pairs: PairList, device: str = "auto", batch: int = 256,
                cache_dir: str | Path = "") -> np.ndarray:
    """Cosine similarity of every pair's two embeddings, by the model in ``model`` (a checkpoint, a run
    folder or an export bundle) at its own resolution; each distinct image is embedded once."""
    dev = resolve_device(device)
    net, resolution = load_embedder(model, dev)
    return Verifier(pairs, resolution, cache_dir).scores(net, dev, batch)
