"""Verification wall time: our evaluation versus a per-pair loop.

Ours (facenet.eval.evaluate.Verifier): each unique image of the pair list decoded once into the
cache, embedded once in big batches, vectorised cosine, sklearn EER. The per-pair loop:
for every pair, PIL open + Resize + CenterCrop + ToTensor + Normalize both images, embed
them as a batch of 2, cosine in Python. Same model, same pairs. Also times ``eer()`` over
1,000,000 random scores (target: well under 1 s) and the identity-bootstrap interval
(``facenet.eval.stats``) with 1,000 resamples over a simulated list of 50,000 pairs between
1,000 identities (target: under 2 s on one core).
"""
from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from common import device, face_set, parse, parser, ratio_line, temp_dir, timed
from facenet.config import TrainConfig
from facenet.data.cache import CacheSpec, cache_size
from facenet.data.folders import PairList
from facenet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facenet.eval.evaluate import Verifier, eer
from facenet.eval.stats import IdentityBootstrap
from facenet.models import build_model


@torch.no_grad()
def per_pair_scores(model: torch.nn.Module, pairs: PairList, res: int, dev: torch.device) -> np.ndarray:
    """The naive loop: both images of every pair loaded and embedded, one pair at a time."""
    tf = T.Compose([T.Resize(cache_size(res)), T.CenterCrop(res), T.ToTensor(),
                    T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def load(rel: str) -> torch.Tensor:
        with Image.open(pairs.root / rel) as im:
            return tf(im.convert("RGB"))

    model.eval()
    scores = []
    for _, a, b in pairs.lines:
        e = model(torch.stack([load(a), load(b)]).to(dev))
        scores.append(F.cosine_similarity(e[0:1].float(), e[1:2].float()).item())
    return np.asarray(scores)


def bootstrap_seconds(n_pairs: int = 50_000, n_ids: int = 1_000,
                      n_resamples: int = 1_000) -> tuple[float, float, str]:
    """Median wall and CPU seconds of 3 intervals (drawing the resamples included), and the interval."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n_pairs)
    left = rng.integers(0, n_ids, n_pairs)
    right = np.where(labels == 1, left, (left + rng.integers(1, n_ids, n_pairs)) % n_ids)
    effect = rng.normal(0, 0.5, n_ids)   # identities with random effects, as in tests/facenet/eval/test_stats.py
    scores = (2.5 * labels + effect[left] + effect[right] + rng.normal(size=n_pairs)).astype(np.float32)
    wall, cpu = [], []
    for _ in range(3):
        start = time.process_time()
        with timed() as t:
            interval = IdentityBootstrap(labels, left, right, n_resamples, seed=0).interval(scores)
        wall.append(t())
        cpu.append(time.process_time() - start)
    return statistics.median(wall), statistics.median(cpu), str(interval)


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--model", default="resnet_w")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--n-out", type=int, default=128)
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--pairs", type=int, default=600, help="pairs in the synthetic val list")
    p.add_argument("--device", default="auto")
    a = parse(p, argv)
    if a.quick:
        a.width, a.n_out, a.res, a.pairs = 0.125, 32, 32, 60
    dev = device(a.device)
    torch.manual_seed(0)
    model = build_model(TrainConfig(model=a.model, width=a.width, n_out=a.n_out)).to(dev).eval()
    n_ids, per_id = (24, 4) if a.quick else (400, 8)   # identities in all four splits; val gets 10 %
    with face_set(a.data, n_ids, per_id, cache_size(a.res), val_pairs=a.pairs, test_pairs=10) as data, \
            temp_dir() as cache:
        pairs = PairList.read(data / "val", "val_pairs.csv")
        print(f"{len(pairs.lines)} pairs over {len(pairs.images)} unique images, {a.model} width {a.width} "
              f"at {a.res} px, {dev}")
        with timed() as cold:   # first evaluation: decodes into the cache, then embeds
            verifier = Verifier(pairs, a.res, CacheSpec(cache))
            ours_eer = verifier.eer(model, dev)
        later = []
        for _ in range(3):   # every later epoch: the cache is there
            with timed() as warm:
                verifier.eer(model, dev)
            later.append(warm())
        with timed() as naive:
            naive_scores = per_pair_scores(model, pairs, a.res, dev)
            naive_eer = eer(pairs.labels, naive_scores)
        gap = np.abs(verifier.scores(model, dev) - naive_scores).max()
    print(f"ours: first call {cold():.2f} s (cache build included), later calls {statistics.median(later):.2f} s; "
          f"per-pair loop {naive():.2f} s")
    print(f"EER ours {ours_eer:.2f}% vs per-pair {naive_eer:.2f}%, largest score difference {gap:.1e}")
    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 2, 1_000_000), rng.standard_normal(1_000_000)
    with timed() as t:
        eer(labels, scores)
    print(f"eer() over 1,000,000 random scores: {t():.3f} s")
    wall, cpu, interval = bootstrap_seconds()
    print(f"identity bootstrap, 1,000 resamples over 50,000 pairs of 1,000 identities: {wall:.2f} s "
          f"({cpu:.2f} s CPU; median of 3; target < 2 s), EER {interval}")
    print(f"later-epoch ratio: {naive() / statistics.median(later):.1f}x (cache warm)")
    ratio_line(naive() / cold(), f"ours {cold():.2f} s incl. cache build vs per-pair loop {naive():.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
