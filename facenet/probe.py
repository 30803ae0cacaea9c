"""How fast a config trains and evaluates here: a few real training steps and an embedding pass.

``probe(config)`` builds the run exactly as ``fit`` does (same data cache, sampler, loader threads,
model, loss, optimiser; in a temporary run folder), times ``steps`` optimisation steps after
``warmup`` untimed ones, an embedding pass over up to ``eval_images`` val images, and one epoch's
checkpoint writes. A trial of that config then costs about
``setup + epochs x (images_per_epoch / train_rate + val_images / eval_rate + checkpoint)``.
Knows nothing of Optuna: the search layer keeps the table of these measurements.
"""
from __future__ import annotations

import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .config import TrainConfig
from .models import LAYOUTS, WIDTHS


@dataclass(frozen=True)
class Speed:
    """One probe's measurements (rates in images per second, times in seconds)."""

    device: str                  # device_label: what the rates hold for
    train_images_per_s: float
    eval_images_per_s: float
    setup_s: float               # building the run: data caches opened, model, loss, optimiser
    checkpoint_s: float          # one epoch's checkpoint writes (last.pt and best.pt)
    steps: int                   # timed steps behind train_images_per_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def device_label(device: torch.device | str, threads: int | None = None) -> str:
    """The name rates are kept under: the GPU's name, or the CPU's model and the intra-op threads
    (a worker's OMP_NUM_THREADS changes its speed as much as another CPU would); ``threads``: another
    process's (default: this one's)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {_cpu_model()} x{threads or torch.get_num_threads()} threads"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def speed_key(config: TrainConfig) -> dict[str, Any]:
    """The config fields that set a step's cost: the network's shape and the images per batch
    (width, depth and block only for the models that take them)."""
    key: dict[str, Any] = {"model": config.model}
    if config.model in WIDTHS:
        key["width"] = config.width
    if config.model in LAYOUTS:
        key.update(depth=config.depth, block=config.block)
    key.update(n_out=config.n_out, resolution=config.resolution,
               batch_images=config.batch_size * config.n_per_class)
    return key


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe(config: TrainConfig, *, steps: int = 5, warmup: int = 2, eval_images: int = 512,
          log: Callable[[str], None] = lambda m: None, min_seconds: float = 1.0) -> Speed:
    """Measure ``config`` on this machine: seconds of setup, training and evaluation images/s.

    At least ``steps`` steps and ``min_seconds`` of them are timed (tiny models on a CPU take
    milliseconds a step: a longer window averages over other load); evaluation is timed over
    at least ``min_seconds / 2``.
    """
    from . import checkpoint
    from .data.cache import CacheSpec, cache_size, load_images
    from .data.folders import IdentityFolder, PairList
    from .eval.evaluate import embed
    from .train import Trainer

    size = cache_size(config.resolution)
    # the decoded caches are built once per data set and size; a trial finds them built, so time without that
    folder = IdentityFolder.scan(config.train_path)
    cache = CacheSpec.of(config)   # the run's own format and budget: a probe builds the cache a trial reads
    load_images(folder.root, folder.paths, size, cache)
    pairs = PairList.read(config.val_path, config.val_list, config.max_val_pairs)
    load_images(pairs.root, pairs.images, size, cache)
    with tempfile.TemporaryDirectory(prefix="facenet-probe-") as tmp:
        c = config.replace(run_dir=tmp, resume=False, initial_model="", epochs=1, patience=0)
        start = time.perf_counter()
        trainer = Trainer(c, log=lambda m: None)
        setup = time.perf_counter() - start
        try:
            train_rate, timed = _train_rate(trainer, steps, warmup, min_seconds)
            eval_rate = _eval_rate(trainer, embed, eval_images, min_seconds / 2)
            start = time.perf_counter()
            checkpoint.save_atomic(trainer._state(), Path(tmp) / "last.pt")
            best = {"model": trainer.model.state_dict(), "config": c.to_dict()}
            checkpoint.save_atomic(best, Path(tmp) / "best.pt")
            saving = time.perf_counter() - start
        finally:
            trainer.loader.close()
    speed = Speed(device_label(trainer.device), train_rate, eval_rate, setup, saving, timed)
    log(f"probe {speed_key(config)}: train {train_rate:.1f} img/s, eval {eval_rate:.1f} img/s, "
        f"setup {setup:.2f}s, checkpoints {saving:.2f}s on {speed.device}")
    return speed


def _train_rate(trainer, steps: int, warmup: int, min_seconds: float) -> tuple[float, int]:
    """Images/s of at least ``steps`` optimisation steps (and ``min_seconds``) after ``warmup`` untimed
    ones, crossing epochs if needed; (rate, steps timed)."""
    trainer.model.train()
    trainer.criterion.train()
    warmup = max(1, warmup)
    done, images, start, epoch = 0, 0, 0.0, 0
    while True:
        trainer.sampler.set_epoch(epoch)
        for x, y in trainer.loader:
            loss = trainer.step(x, y)
            done += 1
            if done == warmup:
                float(loss)   # waits for the device
                start = time.perf_counter()
            elif done > warmup:
                images += len(y)
                if done - warmup >= steps and time.perf_counter() - start >= min_seconds:
                    float(loss)
                    _sync(trainer.device)
                    return images / (time.perf_counter() - start), done - warmup
        epoch += 1


def _eval_rate(trainer, embed, n: int, min_seconds: float) -> float:
    """Images/s embedding up to ``n`` val images, passes repeated for at least ``min_seconds``."""
    images = trainer.verifier.images[:n]
    c = trainer.config
    embed(trainer.model, images[: min(len(images), c.eval_batch)], c.resolution, trainer.device, c.eval_batch,
          trainer.channels_last)   # warm-up: the first batch pays for allocation and kernel selection
    _sync(trainer.device)
    start, done = time.perf_counter(), 0
    while not done or time.perf_counter() - start < min_seconds:
        embed(trainer.model, images, c.resolution, trainer.device, c.eval_batch, trainer.channels_last)
        _sync(trainer.device)
        done += len(images)
    return done / (time.perf_counter() - start)
