"""What a tracking backend is told: the events of a study's runs, as plain values (no Optuna objects)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunInfo:
    """One training run: a trial of a study, a retrain of one, or a lone ``facesearch train``."""

    name: str                                   # trial-0003, retrain-0003, or the run folder's name
    run_dir: Path
    study: str | None = None                    # None: a lone train run
    number: int | None = None                   # the trial's number
    kind: str = "trial"                         # trial | retrain | train
    params: dict[str, Any] = field(default_factory=dict)    # the searched params (what trials differ in)
    config: dict[str, Any] = field(default_factory=dict)    # the full TrainConfig

    @property
    def key(self) -> str:
        return f"{self.study or ''}/{self.name}"


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    loss: float
    val_eer: float
    lr: float
    images_per_s: float


@dataclass(frozen=True)
class RunEnd:
    state: str                                  # COMPLETE | PRUNED | FAIL
    value: float | None = None                  # best val EER (%), also for a pruned run that trained
    interval: tuple[float, float] | None = None  # its 95 % interval
    param_count: int | None = None
    pruned_by: str | None = None                # the rule (record.PRUNE_RULES) when pruned
    reason: str | None = None                   # why it was pruned or failed
    best_epoch: int | None = None


class Tracker:
    """A backend. Methods run on the tracking thread, never the training one; an exception disables the
    backend for the rest of the process after one warning line."""

    name = ""

    def __init__(self, target: str, runs_root: Path):
        self.target, self.runs_root = target, Path(runs_root)

    @classmethod
    def validate(cls, target: str) -> None:
        """Raise ``TrackingError`` for a target that can never work here (before anything starts)."""

    def check(self) -> None:
        """Raise if the backend cannot be reached (a server that does not answer); called first."""

    def study_start(self, study: str, description: str, settings: dict[str, Any]) -> None:
        """Once per study and process (the parent run, where the backend has one); ``settings``: sampler,
        pruner, param_cap, n_trials, epochs, fixed, and ``space`` (each param as ``ParamSpec.to_dict``)."""

    def study_end(self, study: str, summary: dict[str, Any]) -> None:
        """The study's budget is spent (``study run`` saw it end): counts and the best trial."""

    def run_start(self, run: RunInfo) -> None:
        raise NotImplementedError

    def epoch(self, run: RunInfo, metrics: EpochMetrics) -> None:
        raise NotImplementedError

    def run_end(self, run: RunInfo, end: RunEnd) -> None:
        raise NotImplementedError

    def artifacts(self, run: RunInfo, paths: list[Path]) -> None:
        """Files of a run, sent before its end (a retrain's model, scores and figures)."""

    def close(self) -> None:
        """Flush and let go (the process is ending)."""
