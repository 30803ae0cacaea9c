"""How sure a ranking is: each trial's EER interval, and whether two trials can be told apart.

A finished trial keeps the 95 % identity-bootstrap interval of its best epoch's val EER
(``record.VAL_EER_CI``) and the path of that epoch's scores (``record.VAL_SCORES``). Two trials
scored on the same val list are compared *paired*: the same identity resamples for both
(``facenet.eval.stats.ScoredPairs.compare_many``), which cancels the noise the two share. When a score
file is gone (deleted, another machine's disk) the comparison falls back to the two stored
intervals (``facenet.eval.compare.compare_intervals``), which is wider: it calls fewer trials different.
"""
from __future__ import annotations

import math
import statistics
import warnings
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from facenet.eval.compare import LEVEL, N_RESAMPLES, SEED, EerComparison, EerInterval, compare_intervals
from facenet.eval.stats import ScoredPairs

from ..record import RetrainRecord, TrialRecord

PAIRED = "paired"          # same resamples of the same list for both trials (EerComparison.method)
UNPAIRED = "unpaired"      # from the two stored intervals (a score file is missing or the lists differ)
Gap = EerComparison        # a trial (A) against a reference trial (B): difference > 0, it is worse


def best_reached(t: FrozenTrial) -> tuple[float | None, int | None]:
    """The trial's best val EER and its epoch: a complete trial's value, else the best epoch reported
    (Optuna gives a pruned trial the *last* reported value, not the best)."""
    best_epoch = TrialRecord.of(t).best_epoch
    if t.state == TrialState.COMPLETE and t.value is not None:
        return t.value, best_epoch
    if not t.intermediate_values:
        return None, best_epoch
    step = min(t.intermediate_values, key=lambda s: (t.intermediate_values[s], s))
    return t.intermediate_values[step], step


def interval_of(t: FrozenTrial) -> EerInterval | None:
    """The best epoch's val EER with its stored 95 % interval; None when the trial kept none."""
    ci, (value, _) = TrialRecord.of(t).val_eer_ci, best_reached(t)
    return None if ci is None or value is None else EerInterval(value, ci[0], ci[1])


def eer_text(t: FrozenTrial) -> str:
    """``7.50% [5.9, 9.4]``, or ``7.50%`` for a trial without an interval, or '' without an EER."""
    interval, (value, _) = interval_of(t), best_reached(t)
    return str(interval) if interval else "" if value is None else f"{value:.2f}%"


def retrain_text(record: RetrainRecord) -> str:
    """A retrain record's val EER, with its interval when it kept one."""
    if record.val_eer is None:
        return "?"
    return str(EerInterval(record.val_eer, *record.val_eer_ci)) if record.val_eer_ci else f"{record.val_eer:.2f}%"


def scores_of(t: FrozenTrial) -> ScoredPairs | None:
    """The best epoch's saved val scores, or None when the trial kept none or the file is gone (or
    unreadable: the comparison then falls back to the stored intervals rather than failing)."""
    path = TrialRecord.of(t).val_scores
    try:
        return _load(path, Path(path).stat().st_mtime_ns) if path else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


@lru_cache(maxsize=32)
def _load(path: str, _mtime: int) -> ScoredPairs:    # the mtime in the key: a rewritten file is read again
    return ScoredPairs.load(path)


def compare_to(ref: FrozenTrial, others: Sequence[FrozenTrial]) -> list[Gap | None]:
    """Each of ``others`` against ``ref``: paired where both score files exist and hold the same list,
    else from the stored intervals; None where neither is possible (a trial kept no interval)."""
    ref_scores = scores_of(ref)
    out: list[Gap | None] = [None] * len(others)
    paired = []
    for i, other in enumerate(others):
        scores = scores_of(other) if ref_scores is not None else None
        if scores is not None and ref_scores.same_list(scores):
            paired.append((i, scores))
        else:
            a, b = interval_of(other), interval_of(ref)
            if a is not None and b is not None:
                out[i] = compare_intervals(a, b)
    if paired:   # compare_many: the reference is A (one set of its resample EERs); each other is A here
        for (i, _), c in zip(paired, ref_scores.compare_many([s for _, s in paired])):
            out[i] = c.reversed()
    return out


@dataclass(frozen=True)
class Ranked:
    """One of the top trials: its interval, and its gap to the best (rank 0, whose gap is None)."""

    rank: int
    trial: FrozenTrial
    interval: EerInterval | None
    gap: Gap | None = None

    @property
    def verdict(self) -> str:
        if self.rank == 0:
            return "best"
        if self.gap is None:
            return "no interval"
        return "within noise" if self.gap.within_noise else "worse"


def complete_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Complete trials, best first (ties: the earlier trial)."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return sorted(done, key=lambda t: (t.value, t.number))


def rank_top(trials: Sequence[FrozenTrial], n: int = 5) -> list[Ranked]:
    """The ``n`` best complete trials, each after the first compared with the first."""
    top = complete_trials(trials)[:max(n, 1)]
    if not top:
        return []
    gaps = compare_to(top[0], top[1:])
    return [Ranked(0, top[0], interval_of(top[0]))] + [
        Ranked(i, t, interval_of(t), g) for i, (t, g) in enumerate(zip(top[1:], gaps), 1)]


def within_noise_of_best(ranked: Sequence[Ranked]) -> list[FrozenTrial]:
    """The best and every top trial the val list cannot tell from it."""
    return [r.trial for r in ranked if r.verdict in ("best", "within noise")]


def methods_used(gaps: Sequence[Gap | None]) -> str:
    """One line: how the comparisons were made, for the reader to weigh them."""
    kinds = {g.method for g in gaps if g is not None}
    missing = sum(g is None for g in gaps)
    parts = []
    if PAIRED in kinds:
        parts.append(f"paired on the saved val scores (the same {N_RESAMPLES:,} identity resamples for both)")
    if UNPAIRED in kinds:
        parts.append("unpaired from the stored intervals where a score file is gone or the val lists differ "
                     "(wider: it calls fewer trials different)")
    if missing:
        parts.append(f"{missing} without any interval (trained before intervals were kept)")
    return "; ".join(parts) or "nothing to compare"


# ---------------------------------------------------------------- a median over trials
@lru_cache(maxsize=8)
def _bootstrap(labels: bytes, left: bytes, right: bytes):   # one list's resamples, drawn once
    from facenet.eval.stats import IdentityBootstrap

    return IdentityBootstrap(np.frombuffer(labels, np.int64), np.frombuffer(left, np.int64),
                             np.frombuffer(right, np.int64), N_RESAMPLES, SEED)


def resample_eers(t: FrozenTrial) -> np.ndarray | None:
    """The trial's best-epoch EER in each identity resample of its val list (None without scores)."""
    s = scores_of(t)
    if s is None:
        return None
    arrays = [np.ascontiguousarray(a, np.int64).tobytes() for a in (s.labels, s.left_ids, s.right_ids)]
    return _bootstrap(*arrays).eers(s.scores)


def median_interval(trials: Sequence[FrozenTrial], level: float = LEVEL,
                    seed: int = SEED) -> tuple[float, float, float]:
    """Median best val EER over ``trials`` with a 95 % interval that resamples both the trials (which
    points the sampler drew) and each trial's val identities; (median, nan, nan) for one trial."""
    values = [v for t in trials if (v := best_reached(t)[0]) is not None]
    if not values:
        return math.nan, math.nan, math.nan
    med = statistics.median(values)
    if len(values) < 2:
        return med, math.nan, math.nan
    rows = []
    for t in trials:
        value = best_reached(t)[0]
        if value is not None:
            boot = resample_eers(t)
            rows.append(np.full(N_RESAMPLES, value) if boot is None else boot)
    table = np.stack(rows)                                   # (trials, resamples)
    pick = np.random.default_rng(seed).integers(0, len(rows), (N_RESAMPLES, len(rows)))
    with warnings.catch_warnings():   # a resample of a tiny list may lack a genuine pair in every trial: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        medians = np.nanmedian(table[pick, np.arange(N_RESAMPLES)[:, None]], axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(medians, [tail, 100 - tail])
    return med, float(low), float(high)
