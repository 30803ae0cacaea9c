"""Weights & Biases: one run per trial (and per retrain), grouped by study; offline unless WANDB_MODE says
otherwise (compute nodes have no network: ``wandb sync`` uploads the run folders later).

Run folders go under ``$WANDB_DIR``, else the study's run folder (``<study folder>/wandb/offline-run-*``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import EpochMetrics, RunEnd, RunInfo, Tracker

EXIT_CODE = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 1}


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, target: str, runs_root: Path):
        super().__init__(target, runs_root)
        self.runs: dict[str, Any] = {}

    def check(self) -> None:
        import wandb  # noqa: F401   (the package is there: merge_targets checked; this loads it off the training thread)

    def _dir(self, run: RunInfo) -> Path:
        if os.environ.get("WANDB_DIR"):
            return Path(os.environ["WANDB_DIR"])
        return Path(run.run_dir).parent if run.study else Path(run.run_dir)   # the study's run folder

    def run_start(self, run: RunInfo) -> None:
        import wandb

        folder = self._dir(run)
        folder.mkdir(parents=True, exist_ok=True)
        self.runs[run.key] = wandb.init(
            project=self.target, group=run.study, name=f"{run.study}/{run.name}" if run.study else run.name,
            job_type=run.kind, dir=str(folder), mode=os.environ.get("WANDB_MODE") or "offline",
            config={"params": run.params, **run.config}, reinit="create_new",
            tags=[t for t in (run.kind, run.study) if t],
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True))

    def epoch(self, run: RunInfo, m: EpochMetrics) -> None:
        self.runs[run.key].log({"train_loss": m.loss, "val_eer": m.val_eer, "lr": m.lr,
                                "images_per_s": m.images_per_s, "epoch": m.epoch}, step=m.epoch)

    def run_end(self, run: RunInfo, end: RunEnd) -> None:
        handle = self.runs.pop(run.key)
        summary = {"state": end.state, "best_val_eer": end.value, "param_count": end.param_count,
                   "best_epoch": end.best_epoch, "pruned_by": end.pruned_by, "reason": end.reason}
        if end.interval:
            summary |= {"best_val_eer_low": end.interval[0], "best_val_eer_high": end.interval[1]}
        handle.summary.update({k: v for k, v in summary.items() if v is not None})
        handle.finish(exit_code=EXIT_CODE.get(end.state, 0))

    def artifacts(self, run: RunInfo, paths: list[Path]) -> None:
        """A W&B artifact of the (still open) run: kept in its offline folder, uploaded by ``wandb sync``."""
        import wandb

        artifact = wandb.Artifact(f"{run.study or 'train'}-{run.name}", type="model")
        for path in paths:
            (artifact.add_dir if path.is_dir() else artifact.add_file)(str(path))
        self.runs[run.key].log_artifact(artifact)

    def close(self) -> None:
        for handle in self.runs.values():   # runs whose end never came (the process is stopping)
            handle.finish(exit_code=1)
        self.runs.clear()


TRACKER = WandbTracker
