"""``fit(config)``: train one face-embedding model, validating EER every epoch.

The single seam to the search layer: ``fit(config, on_epoch=callback)``; the callback
sees every epoch's result and may raise to stop the run (pruning). Each epoch ends with
an atomic checkpoint, so an interrupted run resumes from its last completed epoch.
"""
from __future__ import annotations

import math
import random
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import checkpoint
from .config import TrainConfig
from .data.augment import build_augment
from .data.cache import cache_size, load_images
from .data.folders import IdentityFolder, PairList, readable
from .data.loader import BatchLoader
from .data.sampler import training_set
from .data.transforms import ToFloat, normalize_
from .devices import amp_dtype, autocast_for, reset_compiler, resolve_device
from .errors import DataError, NonFiniteLoss
from .eval.evaluate import Verifier, eer
from .eval.stats import ScoredPairs, pair_identities
from .losses import build_loss
from .models import build_model, count_params
from .optim import build_optimizer, build_scheduler
from .runnable import check_runnable


@dataclass
class EpochResult:
    epoch: int
    epochs: int
    loss: float
    val_eer: float
    lr: float
    seconds: float
    images_per_s: float
    replayed: bool = False       # an epoch a resumed run finished before it stopped, announced again

@dataclass
class RunResult:
    best_val_eer: float
    best_epoch: int
    history: list[dict]
    run_dir: str
    params: int
    device: str
    seconds: float
    stopped_early: bool = False
    skipped_images: int = 0
    resumed_from: int = 0        # epochs already done when this process picked the run up
    # 95 % identity-bootstrap interval of the best epoch's val EER (facenet.eval.stats; 1,000 resamples),
    # from its scores, which are kept in run_dir/BEST_VAL_SCORES for paired comparisons between runs
    val_eer_ci: tuple[float, float] | None = None


BEST_VAL_SCORES = "best_val_scores.npz"   # facenet.eval.stats.ScoredPairs of the best epoch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Everything one run holds; ``fit`` is the public entry point."""

    def __init__(self, config: TrainConfig, log: Callable[[str], None] = print, progress: bool = False):
        self.config, self.log, self.progress = config, log, progress
        c = config
        check_runnable(c)   # a configuration that can never run fails before any data is read
        self.device = resolve_device(c.device)   # first: CUDA state created from here on lands on this GPU
        seed_everything(c.seed)
        self.run_dir = Path(c.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        c.save(self.run_dir / "config.json")

        self.train_set = IdentityFolder.scan(c.train_path)
        images = load_images(self.train_set.root, self.train_set.paths, cache_size(c.resolution), c.cache_dir,
                             progress, c.cache_format, c.cache_budget_gb, log)
        good = readable(images, self.train_set)
        self.skipped = len(self.train_set.paths) - len(good)
        val = PairList.read(c.val_path, c.val_list, c.max_val_pairs).check_both_labels(Path(c.val_path) / c.val_list)
        self.verifier = Verifier(val, c.resolution, c.cache_dir, progress, c.cache_format, c.cache_budget_gb, log)
        self.val_identities = pair_identities(self.verifier.pairs)
        self.best_scores: ScoredPairs | None = None

        train = training_set(self.train_set.labels, c.batch_size, c.n_per_class, c.max_img_per_cls, c.seed,
                             c.max_identities, good)
        n_classes = train.n_classes
        if n_classes < len(self.train_set.classes):
            self.log(f"training on {n_classes} of the {len(self.train_set.classes)} identities "
                     f"(max_identities)")
        self.model = build_model(c).to(self.device)
        self.criterion = build_loss(c, n_classes).to(self.device)
        batch = train.sampler.batch_size
        if batch < c.batch_size:
            self.log(f"batch_size {c.batch_size} > {n_classes} identities in {c.train_path}: using {batch}")
        self.sampler = train.sampler
        self.steps = len(self.sampler)
        if self.steps == 0:
            raise DataError(f"{c.train_path}: too few images for one batch of {batch} identities x {c.n_per_class}")
        cuda = self.device.type == "cuda"
        self.augment = build_augment(c)
        self.loader = BatchLoader(images.for_device(self.device), train.labels, self.sampler, c.resolution,
                                  self.augment.flip, c.workers, device=self.device)
        self.channels_last = cuda and c.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.to_float = ToFloat(self.channels_last)
        self.optimizer = build_optimizer([self.model, self.criterion], c)
        self.scheduler = build_scheduler(self.optimizer, c, self.steps)
        # fp16 autocast (GPUs without native bf16) needs loss scaling; bf16 and fp32 do not
        fp16 = c.amp and amp_dtype(self.device) == torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None
        if c.compile:
            reset_compiler()   # graphs of an earlier run in this process (the previous trial) go
        self.forward_model = torch.compile(self.model) if c.compile else self.model
        self.params = count_params(c)
        self.epoch, self.history = 0, []
        self.best_eer, self.best_epoch = math.inf, 0
        self.bad_epochs = 0
        self.resumed_from = 0

        last = self.run_dir / "last.pt"
        if c.resume and last.exists():
            self._restore(checkpoint.load(last))
            self.resumed_from = self.epoch
            self.log(f"resumed {self.run_dir} after epoch {self.epoch}")
        elif c.initial_model:
            weights = checkpoint.model_state(checkpoint.load(c.initial_model))
            loaded, skipped = checkpoint.load_partial(self.model, weights)
            self.log(f"initial weights from {c.initial_model}: {len(loaded)} tensors loaded, {len(skipped)} skipped"
                     + (f" ({', '.join(skipped[:3])}{' ...' if len(skipped) > 3 else ''})" if skipped else ""))

    # ------------------------------------------------------------ state
    def _state(self) -> dict:
        return {
            "model": self.model.state_dict(), "criterion": self.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else {},
            "augment": self.augment.state_dict() if hasattr(self.augment, "state_dict") else {},
            "epoch": self.epoch, "history": self.history, "best_eer": self.best_eer, "best_epoch": self.best_epoch,
            # triplet mining draws on the embeddings' device: its generator is saved too, for exact resumes
            "bad_epochs": self.bad_epochs, "rng": checkpoint.rng_state(self.device),
            "config": self.config.to_dict(),
        }

    def _restore(self, s: dict) -> None:
        checkpoint.load_strict(self.model, s["model"], self.run_dir / "last.pt")
        self.criterion.load_state_dict(s["criterion"])
        self.optimizer.load_state_dict(s["optimizer"])
        self.scheduler.load_state_dict(s["scheduler"])
        if self.scaler and s["scaler"]:
            self.scaler.load_state_dict(s["scaler"])
        if s["augment"] and hasattr(self.augment, "load_state_dict"):
            self.augment.load_state_dict(s["augment"])
        self.epoch, self.history = s["epoch"], list(s["history"])
        self.best_eer, self.best_epoch, self.bad_epochs = s["best_eer"], s["best_epoch"], s["bad_epochs"]
        checkpoint.restore_rng(s["rng"], self.device, s.get("cuda_rng"))
        saved = self.run_dir / BEST_VAL_SCORES      # absent in runs checkpointed before it existed
        self.best_scores = ScoredPairs.load(saved) if saved.exists() else None

    # ------------------------------------------------------------ loop
    def train_epoch(self) -> tuple[float, float]:
        """One pass over the sampler's batches; returns (mean loss, images/s)."""
        c, dev = self.config, self.device
        self.model.train()
        self.criterion.train()
        self.sampler.set_epoch(self.epoch)
        # the sampler's batch count varies by an identity collision or two per epoch; put the
        # per-iteration schedule back on this epoch's first step so epoch boundaries stay exact
        first_step = (self.epoch - 1) * self.steps
        if self.scheduler.last_epoch != first_step:
            self.scheduler.last_epoch = first_step - 1
            with warnings.catch_warnings():   # "step() before optimizer.step()": intended, nothing is skipped
                warnings.simplefilter("ignore", UserWarning)
                self.scheduler.step()
        self.epoch_lr = self.optimizer.param_groups[0]["lr"]
        total, n_images, start = torch.zeros((), device=dev), 0, time.perf_counter()
        batches = self.loader
        if self.progress:
            from rich.progress import track
            batches = track(batches, total=self.steps, description=f"epoch {self.epoch}/{c.epochs}", transient=True)
        for x, y in batches:
            total += self.step(x, y)
            n_images += len(y)
        mean = float(total) / self.steps   # one device sync per epoch, not per step
        if not math.isfinite(mean):
            raise NonFiniteLoss(f"training loss became {mean} in epoch {self.epoch} (lr {c.lr:g}, loss {c.loss}); "
                                f"lower the learning rate or the margin")
        return mean, n_images / (time.perf_counter() - start)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimisation step on a batch of uint8 NHWC crops; returns the detached loss."""
        c, dev = self.config, self.device
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        x, mix = self.augment(self.to_float(x), y)
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        x = normalize_(x).contiguous(memory_format=layout)
        with autocast_for(dev, c.amp):
            emb = self.forward_model(x)
        emb = emb.float()   # losses compute in fp32 (margins on clamped cosines)
        loss = self.criterion(emb, y)
        if mix is not None:
            perm, lam = mix
            loss = lam * loss + (1 - lam) * self.criterion(emb, y[perm])
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def run(self, on_epoch: Callable[[EpochResult], None] | None = None) -> RunResult:
        c, start = self.config, time.perf_counter()
        for result in self.history:      # a resumed run re-announces its finished epochs
            if on_epoch:
                on_epoch(EpochResult(**{**result, "replayed": True}))
        stopped = False
        while self.epoch < c.epochs:
            self.epoch += 1
            t0 = time.perf_counter()
            loss, speed = self.train_epoch()
            scores = self.verifier.scores(self.model, self.device, c.eval_batch, self.channels_last, c.amp)
            val_eer = eer(self.verifier.pairs.labels, scores)
            result = EpochResult(self.epoch, c.epochs, loss, val_eer, self.epoch_lr,
                                 time.perf_counter() - t0, speed)
            self.history.append(asdict(result))
            if val_eer < self.best_eer:
                self.best_eer, self.best_epoch, self.bad_epochs = val_eer, self.epoch, 0
                checkpoint.save_atomic({"model": self.model.state_dict(), "config": c.to_dict(), "epoch": self.epoch,
                                        "val_eer": val_eer}, self.run_dir / "best.pt")
                self.best_scores = ScoredPairs(self.verifier.pairs.labels, scores, *self.val_identities)
                self.best_scores.save(self.run_dir / BEST_VAL_SCORES)
            else:
                self.bad_epochs += 1
            checkpoint.save_atomic(self._state(), self.run_dir / "last.pt")
            self.log(f"epoch {self.epoch}/{c.epochs}  loss {loss:.4f}  val EER {val_eer:.2f}%  "
                     f"lr {result.lr:.2e}  {speed:.0f} img/s  {result.seconds:.1f}s")
            if on_epoch:
                on_epoch(result)
            if c.patience and self.bad_epochs >= c.patience:
                self.log(f"early stop: no val EER gain in {c.patience} epochs (best {self.best_eer:.2f}% "
                         f"at epoch {self.best_epoch})")
                stopped = True
                break
        # once a run, not per epoch: 1,000 resamples over 50,000 pairs take well under a second
        interval = self.best_scores.interval() if self.best_scores is not None else None
        return RunResult(self.best_eer, self.best_epoch, self.history, str(self.run_dir), self.params,
                         device_name(self.device), time.perf_counter() - start, stopped, self.skipped,
                         self.resumed_from, (interval.low, interval.high) if interval else None)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def fit(config: TrainConfig, on_epoch: Callable[[EpochResult], None] | None = None,
        log: Callable[[str], None] = print, progress: bool = False) -> RunResult:
    """Train ``config`` to the end (or early stop); ``on_epoch`` may raise to stop the run."""
    trainer = Trainer(config, log, progress)
    try:
        return trainer.run(on_epoch)
    finally:
        trainer.loader.close()   # a worker trains trial after trial: no idle threads left behind
        if config.compile:
            reset_compiler()     # nor compiled graphs holding this run's weights on the GPU
