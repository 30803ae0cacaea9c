"""Training images/s fed by the real pipeline versus fed from memory, same model, loss and optimizer.

Pipeline: ``facenet.train.Trainer.train_epoch()`` (cache memmap -> sampler -> loader threads
cutting crops and flips -> batched float conversion/augment/normalise -> step). Memory: the
same Trainer's model, loss, optimizer, scheduler and augmentation, fed the same uint8 crops
already held as tensors, through the same ``Trainer.step``. The ratio is what the pipeline costs the step
(target >= 0.9 on CPU). Defaults: resnet_w width 0.25 at 64 px on CPU, resnet18 at 112 px
on CUDA.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from common import alternate, device, face_set, parse, parser, ratio_line, temp_dir, timed
from facenet.config import TrainConfig
from facenet.data.cache import cache_size
from facenet.train import Trainer


def pipeline_rate(t: Trainer, epochs: int) -> float:
    images, seconds = 0, 0.0
    for _ in range(epochs):
        t.epoch += 1
        with timed() as took:
            t.train_epoch()
        seconds += took()
        images += len(t.sampler) * t.sampler.batch_size * t.sampler.n_per_class   # this epoch's batches
    return images / seconds


def memory_rate(t: Trainer, batches: list[tuple[torch.Tensor, torch.Tensor]], epochs: int) -> float:
    t.model.train()
    t.criterion.train()
    total = torch.zeros((), device=t.device)
    with timed() as took:
        for _ in range(epochs):
            for x, y in batches:
                total += t.step(x, y)
        float(total)   # one sync per pass, as train_epoch does
    return epochs * sum(len(y) for _, y in batches) / took()


def measure(config: TrainConfig, rounds: int, epochs: int = 1) -> tuple[float, float, float]:
    """Median pipeline img/s, in-memory img/s and their per-round ratio, after one warm-up epoch each."""
    t = Trainer(config, log=lambda m: None)
    batches = [(x.clone(), y.clone()) for x, y in t.loader]   # the same uint8 batches, now plain tensors
    if t.device.type == "cuda":
        batches = [(x.pin_memory(), y.pin_memory()) for x, y in batches]
    pipeline_rate(t, 1)
    memory_rate(t, batches, 1)
    return alternate(lambda: pipeline_rate(t, epochs), lambda: memory_rate(t, batches, epochs), rounds,
                     ("pipeline", "in-memory"))


def train_config(data: Path, work: Path, **fields) -> TrainConfig:
    return TrainConfig(train_path=str(data / "train1"), val_path=str(data / "val"), cache_dir=str(work / "cache"),
                       run_dir=str(work / "run"), resume=False, max_val_pairs=100).replace(**fields)


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--device", default="auto")
    p.add_argument("--model", default="", help="default: resnet_w on CPU, resnet18 on CUDA")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--res", type=int, default=0, help="default: 64 on CPU, 112 on CUDA")
    p.add_argument("--loss", default="softmax")
    p.add_argument("--augment", default="flip")
    p.add_argument("--identities", type=int, default=32, help="identities per batch")
    p.add_argument("--n-per-class", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="loader threads")
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds of one epoch each; the median counts")
    a = parse(p, argv)
    dev = device(a.device)
    cuda = dev.type == "cuda"
    model = a.model or ("resnet18" if cuda else "resnet_w")
    res = a.res or (112 if cuda else 64)
    n_ids, per_id = (200, 16) if cuda else (120, 12)   # identities in all four splits; train1 gets 55 %
    if a.quick:
        model, a.width, res, a.identities, a.rounds, n_ids, per_id = "resnet_w", 0.125, 32, 8, 1, 24, 6
    with face_set(a.data, n_ids, per_id, cache_size(res), val_pairs=100, test_pairs=10) as data, temp_dir() as work:
        config = train_config(data, work, model=model, width=a.width, resolution=res, loss=a.loss, augment=a.augment,
                              batch_size=a.identities, n_per_class=a.n_per_class, workers=a.workers, device=str(dev))
        pipe, mem, ratio = measure(config, a.rounds)
    print(f"{model}{f' width {a.width}' if model == 'resnet_w' else ''} at {res} px, {a.loss}, batches of "
          f"{a.identities} x {a.n_per_class}, {a.workers} loader threads, {dev}")
    ratio_line(ratio, f"median of {a.rounds} rounds; pipeline {pipe:.0f} img/s vs in-memory {mem:.0f} img/s")


if __name__ == "__main__":
    main(sys.argv[1:])
