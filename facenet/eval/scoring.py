"""Scoring a pair list with a trained model: what ``score``, the retrain record and the quickstart share."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.cache import CacheSpec
from ..data.folders import PairList
from ..devices import resolve_device
from ..export import load_embedder
from .evaluate import Verifier


def score_pairs(model: str | Path, pairs: PairList, *, device: str = "auto", batch: int = 256,
                cache: CacheSpec | None = None) -> np.ndarray:
    """Cosine similarity of every pair's two embeddings, by the model in ``model`` (a checkpoint, a run
    folder or an export bundle) at its own resolution; each distinct image is embedded once. Images are
    cached as ``cache`` says, by default in the format and budget of the model's training config."""
    dev = resolve_device(device)
    net, config = load_embedder(model, dev)
    if cache is None:   # the training run's format and budget; its folder may be another machine's
        cache = CacheSpec(format=config.cache_format, budget_gb=config.cache_budget_gb)
    return Verifier(pairs, config.resolution, cache).scores(net, dev, batch)
