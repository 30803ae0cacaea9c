"""TensorBoard: event files per trial with its scalars per epoch, and its hparams, so the HParams tab compares
the trials of a study (``tensorboard --logdir <folder>/<study>``).

The target is a folder (events in ``<folder>/<study>/<trial-NNNN>``) or empty: each run's own folder
(``<run folder>/tensorboard``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import EpochMetrics, RunEnd, RunInfo, Tracker

SCALARS = {"train/loss": "loss", "val/eer": "val_eer", "train/lr": "lr", "train/images_per_s": "images_per_s"}
HPARAM_METRIC = "hparam/best_val_eer"   # its own tag: the per-epoch val/eer stays a curve


class TensorboardTracker(Tracker):
    name = "tensorboard"

    def __init__(self, target: str, runs_root: Path):
        super().__init__(target, runs_root)
        self.writers: dict[str, Any] = {}

    def check(self) -> None:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401   (needs the tensorboard package)

    def log_dir(self, run: RunInfo) -> Path:
        if not self.target:
            return Path(run.run_dir) / "tensorboard"
        return Path(self.target) / (run.study or "train") / run.name

    def run_start(self, run: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writers[run.key] = SummaryWriter(log_dir=str(self.log_dir(run)))

    def epoch(self, run: RunInfo, m: EpochMetrics) -> None:
        writer = self.writers[run.key]
        for tag, attr in SCALARS.items():
            writer.add_scalar(tag, getattr(m, attr), m.epoch)
        writer.flush()

    def run_end(self, run: RunInfo, end: RunEnd) -> None:
        writer = self.writers.pop(run.key)
        hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in run.params.items()}
        metrics = {HPARAM_METRIC: end.value if end.value is not None else float("nan")}
        if end.param_count is not None:
            metrics["hparam/param_count"] = float(end.param_count)
        hparams["state"] = end.state
        choices = {k: [str(c) if not isinstance(c, (int, float, str, bool)) else c for c in v]
                   for k, v in run.choices.items()}
        choices["state"] = ["COMPLETE", "PRUNED", "FAIL"]
        writer.add_hparams(hparams, metrics, hparam_domain_discrete=choices, run_name=".")
        writer.close()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


TRACKER = TensorboardTracker
