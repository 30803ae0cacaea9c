"""Verification: embed each unique image of a pair list once, cosine scores, EER."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_curve

from ..data.cache import CacheSpec, cache_size, load_images
from ..data.cache_formats import CachedImages
from ..data.folders import PairList
from ..data.transforms import ToFloat, center_crop, normalize_
from ..devices import PinnedStaging, autocast_for
from ..errors import DataError


def eer(labels: np.ndarray, scores: np.ndarray) -> float:
    """Equal error rate in percent, exactly as the course computes it."""
    fpr, tpr, _ = roc_curve(labels, scores, pos_label=1)
    fnr = 1 - tpr
    i = np.nanargmin(np.abs(fnr - fpr))
    return float(max(fpr[i], fnr[i]) * 100)


@torch.no_grad()
def embed(model: torch.nn.Module, images: np.ndarray | CachedImages, resolution: int, device: torch.device,
          batch: int = 256, channels_last: bool = False, amp: bool = True) -> torch.Tensor:
    """L2-normalised embeddings (N, D) of cached NHWC uint8 images, centre-cropped, in batches;
    under autocast when ``amp`` (as the run trained)."""
    was_training = model.training
    model.eval()
    out, to_float = [], ToFloat(channels_last)
    # crops go through reused pinned buffers (the memmap is read-only, and pageable copies block)
    staging = PinnedStaging(device, (min(batch, len(images)), resolution, resolution, 3))
    for start in range(0, len(images), batch):
        x = normalize_(to_float(staging.to_device(center_crop(images[start:start + batch], resolution))))
        with autocast_for(device, amp):
            e = model(x)
        out.append(F.normalize(e.float(), dim=1))
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def pair_scores(emb: torch.Tensor, pairs: PairList) -> np.ndarray:
    """Cosine similarity of every pair, one vectorised gather (embeddings are unit length)."""
    left = emb[torch.from_numpy(pairs.left).to(emb.device)]
    right = emb[torch.from_numpy(pairs.right).to(emb.device)]
    return (left * right).sum(1).cpu().numpy()


class Verifier:
    """A pair list with its images decoded once; scores any model against it."""

    def __init__(self, pairs: PairList, resolution: int, cache: CacheSpec = CacheSpec(), *, progress: bool = False,
                 log: Callable[[str], None] | None = None):
        self.pairs, self.resolution = pairs, resolution
        images = load_images(pairs.root, pairs.images, cache_size(resolution), cache, progress=progress, log=log)
        if images.bad:   # evaluation refuses unreadable images instead of guessing
            names = ", ".join(str(pairs.root / pairs.images[i]) for i in images.bad[:3])
            raise DataError(f"unreadable image(s) in {pairs.root}: {names}; replace them or drop their pairs")
        self.images = images   # slices of it are uint8 NHWC arrays, decoded if the format is jpeg

    def scores(self, model: torch.nn.Module, device: torch.device, batch: int = 256,
               channels_last: bool = False, amp: bool = True) -> np.ndarray:
        emb = embed(model, self.images, self.resolution, device, batch, channels_last, amp)
        return pair_scores(emb, self.pairs)

    def eer(self, model: torch.nn.Module, device: torch.device, batch: int = 256,
            channels_last: bool = False, amp: bool = True) -> float:
        return eer(self.pairs.labels, self.scores(model, device, batch, channels_last, amp))


def write_scores(path: str | Path, scores: np.ndarray, pairs: PairList) -> None:
    """The submission format: ``score,label,path1,path2`` per pair, score to 6 decimals."""
    lines = [f"{s:.6f},{l},{a},{b}" for s, (l, a, b) in zip(scores.tolist(), pairs.lines)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
