"""What the bootstrap of ``stats`` answers with: an EER with its interval, and two models compared on one
list (paired, or from two stored intervals when the scores are gone)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 1000
SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class EerInterval:
    """An EER (percent) with its bootstrap interval; ``str`` gives ``7.50% [5.9, 9.4]``."""

    eer: float
    low: float
    high: float
    n_resamples: int = N_RESAMPLES   # resamples that had both a genuine and an impostor pair

    def __str__(self) -> str:
        return f"{self.eer:.2f}% [{self.low:.1f}, {self.high:.1f}]"


@dataclass(frozen=True)
class EerComparison:
    """Model A against model B on one list: ``difference = eer_a - eer_b`` (points; < 0: A is better).

    Paired (the same resamples for both, ``n_resamples`` > 0) or, when the scores are gone, unpaired from two
    stored intervals (``compare_intervals``: no resamples, no ``p_a_better``)."""

    eer_a: float
    eer_b: float
    difference: float
    low: float
    high: float
    p_a_better: float | None     # share of resamples where A's EER is lower (a tie counts half)
    n_resamples: int = 0

    @property
    def method(self) -> str:
        return "paired" if self.n_resamples else "unpaired"

    @property
    def p_b_better(self) -> float | None:
        return None if self.p_a_better is None else 1.0 - self.p_a_better

    @property
    def within_noise(self) -> bool:
        """The interval of the difference contains 0: the list cannot tell the two models apart."""
        return self.low <= 0 <= self.high

    def reversed(self) -> "EerComparison":
        """B against A (0.0 - x, not -x: an exact tie prints +0.00, not -0.00)."""
        return EerComparison(self.eer_b, self.eer_a, 0.0 - self.difference, 0.0 - self.high, 0.0 - self.low,
                             self.p_b_better, self.n_resamples)

    def gap_text(self) -> str:
        """``+1.20 [-0.4, +2.9]``: the difference in points with its interval."""
        return f"{self.difference:+.2f} [{self.low:+.1f}, {self.high:+.1f}]"

    def __str__(self) -> str:
        verdict = "within noise" if self.within_noise else ("A better" if self.difference < 0 else "B better")
        p = "" if self.p_a_better is None else f", P(A better) {self.p_a_better:.2f}"
        return f"A - B {self.difference:+.2f} points [{self.low:+.1f}, {self.high:+.1f}]{p}: {verdict}"


def unpaired_difference(a: EerInterval, b: EerInterval) -> tuple[float, float]:
    """Approximate interval of ``a.eer - b.eer`` from two stored intervals (MOVER, Zou & Donner 2008).

    For when the scores are gone. It treats the two EERs as independent; two models on one
    list err on many of the same pairs, so it is wider than the paired interval and calls
    fewer models different from the best than ``compare`` would.
    """
    d = a.eer - b.eer
    return (d - float(np.hypot(a.eer - a.low, b.high - b.eer)),
            d + float(np.hypot(a.high - a.eer, b.eer - b.low)))


def compare_intervals(a: EerInterval, b: EerInterval) -> EerComparison:
    """A against B from their stored intervals only (``unpaired_difference``): the fallback comparison."""
    low, high = unpaired_difference(a, b)
    return EerComparison(a.eer, b.eer, a.eer - b.eer, low, high, None)
