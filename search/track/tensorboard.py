"""TensorBoard: event files per trial with its scalars per epoch and its hparams, so the HParams tab compares
the trials of a study (``tensorboard --logdir <folder>/<study>``).

The target is a folder (events in ``<folder>/<study>/<trial-NNNN>``) or empty: each run's own folder
(``<run folder>/tensorboard``). Every trial carries the same HParams experiment, built from the study's
space (every param, with the choices of the categorical ones): TensorBoard reads the first it finds, and one
built from a trial's own params would lack the conditional params that trial did not draw.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import EpochMetrics, RunEnd, RunInfo, Tracker

SCALARS = {"train/loss": "loss", "val/eer": "val_eer", "train/lr": "lr", "train/images_per_s": "images_per_s"}
METRICS = ("hparam/best_val_eer", "hparam/param_count")   # their own tags: the per-epoch val/eer stays a curve
STATES = ["COMPLETE", "PRUNED", "FAIL"]
SCALAR_TYPES = (bool, int, float, str)


def _scalar(value: Any) -> Any:
    return value if isinstance(value, SCALAR_TYPES) else str(value)


class TensorboardTracker(Tracker):
    name = "tensorboard"

    def __init__(self, target: str, runs_root: Path):
        super().__init__(target, runs_root)
        self.writers: dict[str, Any] = {}
        self.experiments: dict[str, Any] = {}   # study -> its HParams experiment summary

    def check(self) -> None:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401   (needs the tensorboard package)

    def log_dir(self, run: RunInfo) -> Path:
        if not self.target:
            return Path(run.run_dir) / "tensorboard"
        return Path(self.target) / (run.study or "train") / run.name

    def study_start(self, study: str, description: str, settings: dict[str, Any]) -> None:
        """The study's HParams experiment: each space param (a representative value gives its type), the
        choices of the categorical ones, the trial state and the metrics."""
        from torch.utils.tensorboard.summary import hparams

        values, domains = {"state": "COMPLETE"}, {"state": STATES}
        for name, param in (settings.get("space") or {}).items():
            if param["type"] == "categorical":
                choices = [_scalar(c) for c in param["choices"]]
                values[name] = choices[0]
                if all(type(c) is type(choices[0]) for c in choices):
                    domains[name] = choices
            else:
                values[name] = float(param["low"]) if param["type"] == "float" else int(param["low"])
        self.experiments[study], _, _ = hparams(values, dict.fromkeys(METRICS, 0.0), domains)

    def run_start(self, run: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        writer = self.writers[run.key] = SummaryWriter(log_dir=str(self.log_dir(run)))
        if run.study in self.experiments:
            writer.file_writer.add_summary(self.experiments[run.study])

    def epoch(self, run: RunInfo, m: EpochMetrics) -> None:
        writer = self.writers[run.key]
        for tag, attr in SCALARS.items():
            writer.add_scalar(tag, getattr(m, attr), m.epoch)
        writer.flush()

    def run_end(self, run: RunInfo, end: RunEnd) -> None:
        """The trial's session (its params and state) and its metrics, under the study's experiment."""
        from torch.utils.tensorboard.summary import hparams

        writer = self.writers.pop(run.key)
        values = {k: _scalar(v) for k, v in run.params.items()} | {"state": end.state}
        metrics = {METRICS[0]: end.value if end.value is not None else float("nan")}
        if end.param_count is not None:
            metrics[METRICS[1]] = float(end.param_count)
        _, start, stop = hparams(values, metrics)
        writer.file_writer.add_summary(start)
        writer.file_writer.add_summary(stop)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value)
        writer.close()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


TRACKER = TensorboardTracker
