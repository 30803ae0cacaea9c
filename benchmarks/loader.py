"""Training-batch throughput: our pipeline versus the course's per-item PIL pipeline.

Ours: the decoded-image cache (memmap) + ClassBalancedSampler + facenet.data.loader.BatchLoader
(2 persistent threads cutting each image's random crop and flip on uint8 into reused buffers,
pinned on CUDA), then the batched float conversion + normalisation that facenet.train runs.
Theirs: torchvision ImageFolder with
PIL open + Resize(256*res/224) + RandomCrop(res) + RandomHorizontalFlip + ToTensor +
Normalize per image, a DataLoader with 2 workers. Same resolution, batch size and number
of batches; the one-off cache build is reported separately. Target: ratio >= 3.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Callable, Iterable

import torch
from torchvision import datasets, transforms as T

from common import alternate, device, face_set, parse, parser, ratio_line, temp_dir, timed
from facenet.config import TrainConfig
from facenet.data.augment import build_augment
from facenet.data.cache import CacheSpec, cache_size, load_images
from facenet.data.folders import IdentityFolder
from facenet.data.loader import BatchLoader
from facenet.data.sampler import ClassBalancedSampler
from facenet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ToFloat, normalize_


def draw(loader: Iterable, n: int, consume: Callable, set_epoch: Callable[[int], None] = lambda e: None) -> int:
    """Consume ``n`` batches, starting new epochs as needed; returns the images seen."""
    seen = 0
    for epoch in itertools.count():
        set_epoch(epoch)
        for x, y in loader:
            consume(x, y)
            seen += len(y)
            n -= 1
            if n == 0:
                return seen
    return seen


def rate(loader: Iterable, n: int, consume: Callable, set_epoch: Callable[[int], None] = lambda e: None) -> float:
    with timed() as t:
        seen = draw(loader, n, consume, set_epoch)
    return seen / t()


def ours(root: Path, res: int, identities: int, per_class: int, batches: int, workers: int, cache: Path,
         dev: torch.device) -> tuple[Callable[[], float], float]:
    """(a function measuring images/s, cache build seconds)."""
    folder = IdentityFolder.scan(root)
    with timed() as build:
        images = load_images(folder.root, folder.paths, cache_size(res), CacheSpec(cache))
    sampler = ClassBalancedSampler(folder.labels, identities, per_class, max_img_per_cls=500, seed=0)
    augment = build_augment(TrainConfig(augment="flip", seed=0))
    loader = BatchLoader(images.array, folder.labels, sampler, res, augment.flip, workers, device=dev)
    to_float = ToFloat()

    def consume(x: torch.Tensor, y: torch.Tensor) -> None:   # the first lines of Trainer.step
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        x, _ = augment(to_float(x), y)
        normalize_(x).contiguous()

    draw(loader, 2, consume, sampler.set_epoch)   # warm up, as a run's first batches do
    return lambda: rate(loader, batches, consume, sampler.set_epoch), build()


def per_item(root: Path, res: int, batch: int, batches: int, workers: int,
             dev: torch.device) -> Callable[[], float]:
    tf = T.Compose([T.Resize(cache_size(res)), T.RandomCrop(res), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(root), tf), batch_size=batch, shuffle=True,
                                         drop_last=True, num_workers=workers, pin_memory=dev.type == "cuda",
                                         persistent_workers=workers > 0)   # kinder to it than the course's loader

    def consume(x: torch.Tensor, y: torch.Tensor) -> None:
        x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)

    draw(loader, 2, consume)
    return lambda: rate(loader, batches, consume)


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--res", type=int, default=112, help="crop size (224 is the course's)")
    p.add_argument("--size", type=int, default=0, help="side of the synthetic images; default res*256/224 + 16, "
                                                       "so the per-item Resize does real work")
    p.add_argument("--identities", type=int, default=16, help="identities per batch")
    p.add_argument("--n-per-class", type=int, default=4)
    p.add_argument("--batches", type=int, default=40, help="batches timed per side and round")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds; the median counts")
    p.add_argument("--workers", type=int, default=2, help="our loader threads and the per-item DataLoader's processes")
    p.add_argument("--device", default="auto")
    a = parse(p, argv)
    if a.quick:
        a.res, a.identities, a.n_per_class, a.batches, a.rounds = min(a.res, 48), 8, 2, 6, 1
    size = a.size or cache_size(a.res) + 16
    dev = device(a.device)
    batch = a.identities * a.n_per_class
    n_ids, per_id = (24, 6) if a.quick else (32, 16)   # identities in all four splits; train1 gets 55 %
    with face_set(a.data, n_ids, per_id, size, val_pairs=10, test_pairs=10) as data, temp_dir() as cache:
        train = data / "train1"
        ours_rate, build = ours(train, a.res, a.identities, a.n_per_class, a.batches, a.workers, cache, dev)
        n = len(IdentityFolder.scan(train).paths)
        print(f"cache build (once per data set and size): {build:.2f} s for {n} images, {n / build:.0f} img/s")
        theirs_rate = per_item(train, a.res, batch, a.batches, a.workers, dev)
        ours_med, theirs_med, ratio = alternate(ours_rate, theirs_rate, a.rounds, ("pipeline", "per-item PIL"))
    print(f"{a.batches} batches of {batch} images at {a.res} px, {a.workers} loader threads vs {a.workers} "
          f"DataLoader worker processes, {dev}")
    ratio_line(ratio, f"median of {a.rounds} rounds; pipeline {ours_med:.0f} img/s vs per-item PIL "
                      f"{theirs_med:.0f} img/s")


if __name__ == "__main__":
    main(sys.argv[1:])
