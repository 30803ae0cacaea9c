"""Tracking: a study's trials mirrored to MLflow, Weights & Biases and TensorBoard.

``open_tracking(targets, ...)`` returns a ``Tracking`` that sends run events (study start, trial
start, epoch metrics, trial end, artifacts) to each configured backend on a background thread, so
logging never slows training; a backend that fails costs one warning line and is dropped.
"""
from .base import EpochMetrics, RunEnd, RunInfo, Tracker
from .hub import Tracking, open_tracking
from .registry import BACKENDS, merge_targets, parse_targets

__all__ = ["BACKENDS", "EpochMetrics", "RunEnd", "RunInfo", "Tracker", "Tracking", "merge_targets",
           "open_tracking", "parse_targets"]
