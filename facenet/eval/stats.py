"""How sure an EER is: identity-bootstrap intervals and paired comparisons of two models.

Pairs of a verification list share identities (every impostor pair of ``id00012`` moves
with how hard ``id00012`` is), so resampling pairs treats correlated pairs as independent
and gives intervals that are too narrow. Here a resample draws the list's identities with
replacement (multiplicity ``m_i`` for identity ``i``) and weighs every pair by how often it
would occur in the list built from the drawn identities:

- a pair of two images of one identity ``i`` (a genuine pair) weighs ``m_i``: each drawn
  copy of ``i`` brings its own genuine pairs. (``m_i ** 2`` would also count pairs *between*
  two copies of one person as extra genuine pairs; they do not exist in the data, and the
  extra weight variance widens the interval: in the simulation of ``tests/facenet/eval/test_stats.py``,
  1,000 lists, ``m_i ** 2`` covered the true EER in 99.4 % with intervals 11.4 points wide,
  ``m_i`` in 96.5 % at 9.0 points, a pair bootstrap in 83.1 % at 5.5 points.)
- a pair of two identities ``i != j`` weighs ``m_i * m_j``: every copy of ``i`` meets every
  copy of ``j`` (the vertex bootstrap of dyadic data; for a mean over pairs it reproduces the
  U-statistic's variance ``4 var(h_1) / n``). It also counts each pair's own noise about
  three times (the variance of ``m_i * m_j`` is 3), so intervals are a little wide rather
  than narrow: over 4,000 simulated lists the EER's own 95 % spread is 8.3 points, not 9.0.
- a pair whose identity was not drawn weighs 0 and drops out, as sklearn drops zero weights.

The identity of an image is the first component of its path (``id00012/00001.jpg`` ->
``id00012``), as in the course layout; a file at the list's root is an identity of its own.

Each resample's EER is exactly the course's (``facenet.eval.evaluate.eer``: sklearn's
``roc_curve`` with its thinning of intermediate points, ``nanargmin |fnr - fpr|``) on the
weighted list, i.e. on the list with every pair repeated ``weight`` times. It is computed
without building any ROC: scores are sorted once; per resample, pair weights are integer
products of multiplicities, and cumulative sums of them give the ROC point (false positives,
true positives) after each distinct score. ``1 - tpr - fpr`` falls strictly from point to
point, so the minimum of ``|fnr - fpr|`` is at one of the two kept points around its zero;
a binary search finds the zero, and a short window around it finds which points sklearn's
thinning keeps (it drops a point whose step equals the next step). All integer arithmetic,
so the figures equal sklearn's bit for bit (``tests/facenet/eval/test_stats.py`` checks it).

The 95 % interval is the bootstrap percentile interval. Resamples are drawn from ``seed``
alone, so every model scored on the same list gets the same resamples: intervals of two
trials are comparable and a paired comparison needs nothing else.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError
from .compare import LEVEL, N_RESAMPLES, SEED, EerComparison, EerInterval

_CHUNK_CELLS = 1_000_000        # resamples x pairs per block (4 MB of int32): measured fastest of 0.5-4 M
_WINDOW = 16                    # ROC points each side of the EER crossing read for the thinning rule


def eer(labels, scores) -> float:
    """The course EER (``facenet.eval.evaluate.eer``), imported on first use: facenet.eval.evaluate pulls in torch,
    and ``study status`` or the live view only format stored intervals."""
    from .evaluate import eer as course_eer

    return course_eer(labels, scores)


# ---------------------------------------------------------------- identities
def identity_of(path: str) -> str:
    """``id00012/00001.jpg`` -> ``id00012`` (the course layout: one folder per identity)."""
    return path.replace("\\", "/").split("/", 1)[0]


def pair_identities(pairs) -> tuple[np.ndarray, np.ndarray]:
    """Identity codes (int) of the two images of every pair of a ``facenet.data.folders.PairList``."""
    _, codes = np.unique([identity_of(p) for p in pairs.images], return_inverse=True)
    codes = codes.astype(np.int64).reshape(-1)
    return codes[pairs.left], codes[pairs.right]


@dataclass
class ScoredPairs:
    """One model's scores on one pair list, with what a bootstrap needs: labels and identities."""

    labels: np.ndarray
    scores: np.ndarray
    left_ids: np.ndarray
    right_ids: np.ndarray

    @classmethod
    def of(cls, pairs, scores: np.ndarray) -> "ScoredPairs":
        left, right = pair_identities(pairs)
        return cls(np.asarray(pairs.labels), np.asarray(scores), left, right)

    def save(self, path: str | Path) -> None:
        """Atomic ``.npz`` (13 bytes a pair): no reader sees half a file, a full disk leaves no debris."""
        from ..checkpoint import write_atomic   # torch comes with it: only a run that saves needs it

        buffer = io.BytesIO()
        np.savez(buffer, labels=self.labels.astype(np.int8), scores=self.scores,
                 left_ids=self.left_ids.astype(np.int32), right_ids=self.right_ids.astype(np.int32))
        write_atomic(path, buffer.getbuffer(), "val scores")

    @classmethod
    def load(cls, path: str | Path) -> "ScoredPairs":
        with np.load(path) as z:
            return cls(z["labels"].astype(np.int64), z["scores"], z["left_ids"].astype(np.int64),
                       z["right_ids"].astype(np.int64))

    def bootstrap(self, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> "IdentityBootstrap":
        return IdentityBootstrap(self.labels, self.left_ids, self.right_ids, n_resamples, seed)

    def interval(self, n_resamples: int = N_RESAMPLES, seed: int = SEED, level: float = LEVEL) -> EerInterval:
        return self.bootstrap(n_resamples, seed).interval(self.scores, level)

    def same_list(self, other: "ScoredPairs") -> bool:
        """Scores of the same pair list (labels and identities pair by pair): what a paired comparison needs."""
        return all(np.array_equal(getattr(self, f), getattr(other, f)) for f in ("labels", "left_ids", "right_ids"))

    def compare(self, other: "ScoredPairs", n_resamples: int = N_RESAMPLES, seed: int = SEED,
                level: float = LEVEL) -> EerComparison:
        """This model (A) against ``other`` (B); both must be scores of the same list."""
        return self.compare_many([other], n_resamples, seed, level)[0]

    def compare_many(self, others: Sequence["ScoredPairs"], n_resamples: int = N_RESAMPLES, seed: int = SEED,
                     level: float = LEVEL) -> list[EerComparison]:
        """This model (e.g. the best trial) against each of ``others``, all scored on the same list."""
        for other in others:
            if not self.same_list(other):
                raise DataError(f"the two score sets come from different pair lists ({len(self.labels)} and "
                                f"{len(other.labels)} pairs); compare models evaluated on the same val list")
        return self.bootstrap(n_resamples, seed).compare_many(self.scores, [o.scores for o in others], level)


# ---------------------------------------------------------------- the bootstrap
class IdentityBootstrap:
    """Identity resamples of one pair list, drawn once from ``seed``; the EERs of any scores under them.

    ``left_ids``/``right_ids``: any labels of the two images' identities (ints or names).
    Giving every pair an identity of its own (``np.arange(n)`` twice) makes it a pair bootstrap.
    """

    def __init__(self, labels: Sequence[int], left_ids: Sequence, right_ids: Sequence,
                 n_resamples: int = N_RESAMPLES, seed: int = SEED):
        self.labels = np.asarray(labels).astype(bool)
        left, right = np.asarray(left_ids), np.asarray(right_ids)
        if not (len(self.labels) == len(left) == len(right)):
            raise ValueError(f"labels ({len(self.labels)}), left_ids ({len(left)}) and right_ids "
                             f"({len(right)}) must have one entry per pair")
        names, codes = np.unique(np.concatenate([left, right]), return_inverse=True)
        codes = codes.reshape(-1)
        n_ids, n = len(names), len(self.labels)
        self.left = codes[:n]
        # a genuine pair (one identity) weighs m_i: its second factor reads a column of ones
        self.right = np.where(codes[n:] == self.left, n_ids, codes[n:])
        self.n_resamples, self.seed = n_resamples, seed
        # resample r draws n_ids identities uniformly with replacement; multiplicity[r, i] counts
        # identity i (a bincount of the draws: twice as fast as rng.multinomial); the last column: ones
        draws = np.random.default_rng(seed).integers(0, n_ids, (n_resamples, n_ids))
        draws += (np.arange(n_resamples) * (n_ids + 1))[:, None]
        self.multiplicity = np.bincount(draws.ravel(), minlength=n_resamples * (n_ids + 1)).reshape(
            n_resamples, n_ids + 1).astype(np.int32)
        self.multiplicity[:, n_ids] = 1

    def eers(self, scores: np.ndarray) -> np.ndarray:
        """EER (percent) of ``scores`` in every resample; NaN where one lacks genuine or impostor pairs."""
        return _resample_eers(self.labels, np.asarray(scores), self.left, self.right, self.multiplicity)

    def interval(self, scores: np.ndarray, level: float = LEVEL) -> EerInterval:
        boot = self.eers(scores)
        low, high = _percentiles(boot, level)
        return EerInterval(eer(self.labels.astype(np.int64), np.asarray(scores)), low, high,
                           int(np.isfinite(boot).sum()))

    def compare(self, scores_a: np.ndarray, scores_b: np.ndarray, level: float = LEVEL) -> EerComparison:
        """A against B under the same resamples: the distribution of ``EER_A - EER_B``."""
        return self.compare_many(scores_a, [scores_b], level)[0]

    def compare_many(self, scores_a: np.ndarray, others: Sequence[np.ndarray],
                     level: float = LEVEL) -> list[EerComparison]:
        """A (e.g. the best trial) against each of ``others``; A's resample EERs are computed once."""
        labels = self.labels.astype(np.int64)
        a, ea = self.eers(scores_a), eer(labels, np.asarray(scores_a))
        out = []
        for scores_b in others:
            b, eb = self.eers(scores_b), eer(labels, np.asarray(scores_b))
            ok = np.isfinite(a) & np.isfinite(b)
            diff = a[ok] - b[ok]
            low, high = _percentiles(diff, level)
            p = float(((diff < 0).sum() + 0.5 * (diff == 0).sum()) / max(len(diff), 1))
            out.append(EerComparison(ea, eb, ea - eb, low, high, p, int(ok.sum())))
        return out


def eer_interval(labels, scores, left_ids, right_ids, n_resamples: int = N_RESAMPLES,
                 seed: int = SEED, level: float = LEVEL) -> EerInterval:
    """EER of ``scores`` with its identity-bootstrap interval, e.g. ``7.50% [5.9, 9.4]``."""
    return IdentityBootstrap(labels, left_ids, right_ids, n_resamples, seed).interval(scores, level)


def compare_eers(labels, scores_a, scores_b, left_ids, right_ids, n_resamples: int = N_RESAMPLES,
                 seed: int = SEED, level: float = LEVEL) -> EerComparison:
    """Paired comparison of two models scored on the same list (same resamples for both)."""
    boot = IdentityBootstrap(labels, left_ids, right_ids, n_resamples, seed)
    return boot.compare(scores_a, scores_b, level)


def within_noise(labels, scores_a, scores_b, left_ids, right_ids, n_resamples: int = N_RESAMPLES,
                 seed: int = SEED, level: float = LEVEL) -> bool:
    """True when the interval of ``EER_A - EER_B`` contains 0: the list cannot tell the models apart."""
    return compare_eers(labels, scores_a, scores_b, left_ids, right_ids, n_resamples, seed,
                        level).within_noise


def weighted_eer(labels, scores, weights) -> float:
    """The course's EER of the list with pair ``i`` repeated ``weights[i]`` times (integers >= 0)."""
    w = np.asarray(weights)
    if w.shape != (len(np.asarray(labels)),) or not np.array_equal(w, np.round(w)) or (w < 0).any():
        raise ValueError("weights must be one non-negative integer (a multiplicity) per pair")
    n = len(w)
    row = np.ones((1, n + 1), np.int64)     # pair i: "identity" i of multiplicity w[i], times the ones column
    row[0, :n] = w
    labels = np.asarray(labels).astype(bool)
    return float(_resample_eers(labels, np.asarray(scores), np.arange(n), np.full(n, n), row)[0])


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if len(v) < 2:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(v, [tail, 100 - tail])
    return float(low), float(high)


# ---------------------------------------------------------------- the engine
def _resample_eers(labels: np.ndarray, scores: np.ndarray, left: np.ndarray, right: np.ndarray,
                   multiplicity: np.ndarray) -> np.ndarray:
    """The course EER for each row r of ``multiplicity``, where pair p weighs
    ``multiplicity[r, left[p]] * multiplicity[r, right[p]]``."""
    if not np.isfinite(scores).all():
        raise ValueError("scores hold NaN or infinite values; the EER of such a model is undefined")
    n_resamples, n = len(multiplicity), len(scores)
    out = np.full(n_resamples, np.nan)
    order = np.argsort(scores, kind="stable")[::-1]
    y = labels[order]
    if y.all() or not y.any():
        return out
    ends = np.r_[np.flatnonzero(np.diff(scores[order])), n - 1]    # last pair of each distinct score
    # ROC point k (0: the origin; k >= 1: after the k-th distinct score) counts this many genuine and
    # impostor pairs
    pos_upto, neg_upto = np.r_[0, np.cumsum(y)[ends]], np.r_[0, np.cumsum(~y)[ends]]
    left, right = left[order], right[order]
    genuine, impostor = (left[y], right[y]), (left[~y], right[~y])
    step = max(1, _CHUNK_CELLS // n)
    for r0 in range(0, n_resamples, step):
        m = multiplicity[r0:r0 + step]
        # a resample's total weight is at most n * max(m)^2: int32 (half the memory traffic) when it fits
        m = m.astype(np.int32 if int(m.max()) ** 2 * n < 2**31 else np.int64, copy=False)
        cum_pos, cum_neg = _cumulative_weights(m, *genuine), _cumulative_weights(m, *impostor)
        out[r0:r0 + step] = _eers_from_cumulative(cum_pos, cum_neg, pos_upto, neg_upto)
    return out


def _cumulative_weights(m: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """(resamples, pairs): running sums of the pair weights, in score order."""
    w = np.take(m, left, axis=1, mode="clip")   # "clip" (indices are valid): no buffered copy, 3x faster
    cross = right != m.shape[1] - 1           # the last column is the ones of one-identity pairs
    if cross.all():
        w *= np.take(m, right, axis=1, mode="clip")
    elif cross.any():
        w[:, cross] *= np.take(m, right[cross], axis=1, mode="clip")
    return np.cumsum(w, axis=1, dtype=w.dtype, out=w)   # dtype: else int32 sums in int64 and casts back


def _eers_from_cumulative(cum_pos: np.ndarray, cum_neg: np.ndarray, pos_upto: np.ndarray,
                          neg_upto: np.ndarray) -> np.ndarray:
    n_rows, n_points = len(cum_pos), len(pos_upto) - 1
    rows = np.arange(n_rows)

    def point(r: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(false positives, true positives), weighted, at ROC point k of rows r."""
        pu, nu = pos_upto[k], neg_upto[k]
        tp = np.where(pu > 0, cum_pos[r, pu - 1], 0).astype(np.int64)
        fp = np.where(nu > 0, cum_neg[r, nu - 1], 0).astype(np.int64)
        return fp, tp

    pos, neg = cum_pos[:, -1].astype(np.int64), cum_neg[:, -1].astype(np.int64)
    ok = (pos > 0) & (neg > 0)
    # binary search for the first point where 1 - tpr - fpr <= 0: neg*tp + pos*fp >= neg*pos (exact in int64)
    lo, hi = np.ones(n_rows, np.int64), np.full(n_rows, n_points, np.int64)
    while (active := lo < hi).any():
        mid = (lo + hi) // 2
        fp, tp = point(rows, mid)
        before = neg * tp + pos * fp < neg * pos
        lo = np.where(active & before, mid + 1, lo)
        hi = np.where(active & ~before, mid, hi)
    crossing = lo

    # around the crossing: which points sklearn's thinning keeps (a window, widened for rows it cannot settle)
    n_back, n_fwd = np.empty(n_rows, np.int64), np.empty(n_rows, np.int64)
    fp_c, tp_c, dfp, dtp = (np.empty(n_rows, np.int64) for _ in range(4))
    todo, half = rows, _WINDOW
    while len(todo):
        settled, found = _kept_neighbours(point, todo, crossing[todo], half, n_points)
        done = todo[settled]
        for target, value in zip((n_back, n_fwd, fp_c, tp_c, dfp, dtp), found):
            target[done] = value[settled]
        todo, half = todo[~settled], half * 4

    fp_a, tp_a = fp_c - n_back * dfp, tp_c - n_back * dtp
    fp_b, tp_b = fp_c + n_fwd * dfp, tp_c + n_fwd * dtp
    with np.errstate(divide="ignore", invalid="ignore"):
        # the same float operations as roc_curve + facenet.eval.evaluate.eer, so the same bits
        negf, posf = neg.astype(np.float64), pos.astype(np.float64)
        fpr_a, fnr_a = fp_a / negf, 1 - tp_a / posf
        fpr_b, fnr_b = fp_b / negf, 1 - tp_b / posf
        take_b = np.abs(fnr_b - fpr_b) < np.abs(fnr_a - fpr_a)     # a tie: the earlier point, as nanargmin
        result = np.where(take_b, np.maximum(fpr_b, fnr_b), np.maximum(fpr_a, fnr_a)) * 100
    return np.where(ok, result, np.nan)


def _kept_neighbours(point, rows: np.ndarray, crossing: np.ndarray, half: int, n_points: int):
    """For each row: how many equal steps back (``n_back``) and forward (``n_fwd``) of the step into the
    crossing point lie the nearest points sklearn keeps; False in ``settled`` where the window is too short.

    sklearn drops point j when its step equals step j+1 (np.diff(_, 2) == 0), always keeping the first
    and last; points that no weight reaches (a zero step) are not there at all.
    """
    offsets = np.arange(-half - 1, half + 1)
    k = np.clip(crossing[:, None] + offsets, 0, n_points)
    fp, tp = point(rows[:, None], k)
    dfp, dtp = np.diff(fp, axis=1), np.diff(tp, axis=1)        # column ``half``: the step into the crossing
    real = (dfp != 0) | (dtp != 0)
    first = real & (fp[:, :-1] == 0) & (tp[:, :-1] == 0)      # the step out of the origin
    same = (dfp == dfp[:, half:half + 1]) & (dtp == dtp[:, half:half + 1])

    back_real, back_stop = real[:, half - 1::-1], (real & (~same | first))[:, half - 1::-1]
    n_back = 1 + (back_real & (np.cumsum(back_stop, axis=1) == 0)).sum(1)
    fwd_real = real[:, half + 1:]
    fwd_stop = fwd_real & ~same[:, half + 1:]
    n_fwd = (fwd_real & (np.cumsum(fwd_stop, axis=1) == 0)).sum(1)

    at_first = first[:, half]                 # the crossing is the curve's first point: the origin before it
    n_back, n_fwd = np.where(at_first, 1, n_back), np.where(at_first, 0, n_fwd)
    back_seen = back_stop.any(1) | (crossing - half <= 1)
    fwd_seen = fwd_stop.any(1) | (crossing + half >= n_points)
    settled = at_first | (back_seen & fwd_seen)
    return settled, (n_back, n_fwd, fp[:, half + 1], tp[:, half + 1], dfp[:, half], dtp[:, half])
