"""Proxy then promote, read back: each promoted trial's proxy EER beside its full-fidelity EER, and how
well the proxy ranked them (Spearman)."""
from __future__ import annotations

import math

from optuna.trial import FrozenTrial, TrialState

from ..record import TrialRecord


def proxy_pairs(trials: list[FrozenTrial]) -> list[tuple[int, int, float, float]]:
    """(trial, proxy trial, proxy val EER, full-fidelity val EER) of each complete promoted trial."""
    out = []
    for t in trials:
        source = TrialRecord.of(t).promoted_from
        done = t.state == TrialState.COMPLETE and t.value is not None
        if source and done and source.get("value") is not None:
            out.append((t.number, source["trial"], source["value"], t.value))
    return out


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (nan when either side is constant or has fewer than 3 values)."""
    from scipy.stats import spearmanr

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan
    return float(spearmanr(xs, ys).statistic)
