"""Counts, durations and sizes: parsed as a spec, the command line or the environment writes them, and
printed one way everywhere (``facenet`` and ``search`` both use this module; it imports nothing of either).

Counts: ``11.5M``, ``800k``, ``11500000``. Durations: ``2h``, ``1h30m``, ``90m``, seconds. Sizes: ``50``
(GB), ``50G``, ``500M``, ``1.5T`` (decimal units, as disk quotas are given).
"""
from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from .errors import ConfigError

_COUNT = re.compile(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgb]?)")
_COUNT_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}
_DURATION = re.compile(r"([0-9]*\.?[0-9]+)\s*([smhd])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_UNITS = {"": 1e9, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}   # a bare number is GB
_SIZE_NAMES = (("TB", 1e12), ("GB", 1e9), ("MB", 1e6))


class UnitError(ConfigError):
    """A count, duration or size that cannot be read; the message says what is accepted."""


# ---------------------------------------------------------------- parsing
def parse_count(value: int | float | str) -> int:
    """``11500000``, ``11.5M``, ``800k``, ``1.2e7``, ``"11_500_000"`` -> a positive whole number."""
    bad = UnitError(f"bad count {value!r}: use a positive whole number, optionally with k, M or G "
                    f"(11.5M, 800k, 11500000)")
    if isinstance(value, bool):
        raise bad
    match = _COUNT.fullmatch(str(value).strip().lower().replace("_", "").replace(",", ""))
    if not match:
        raise bad
    try:
        number = Decimal(match[1]) * _COUNT_UNITS[match[2]]
    except InvalidOperation:
        raise bad from None
    if number <= 0 or number != number.to_integral_value():
        raise bad
    return int(number)


def parse_duration(value: int | float | str) -> float:
    """Seconds from ``3600``, ``"2h"``, ``"30m"``, ``"1h30m"``, ``"1.5d"``."""
    bad = UnitError(f"bad duration {value!r}: use seconds or a number with s, m, h or d (2h, 30m, 1h30m)")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise bad from None
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if not 0 < seconds < math.inf:
        raise bad
    return seconds


def parse_size(text: str, source: str) -> float:
    """Bytes from ``'50'`` (GB), ``'50G'``, ``'500M'``, ``'1.5T'``; ``source`` names the setting in errors."""
    t = text.strip().upper().removesuffix("B")
    unit = t[-1:] if t[-1:] in _SIZE_UNITS and t[-1:] else ""
    try:
        value = float(t[:-1] if unit else t)
    except ValueError:
        raise UnitError(f"{source}={text!r}: expected a size such as 50 (GB), 50G or 500M") from None
    if value < 0:
        raise UnitError(f"{source}={text!r}: a size cannot be negative")
    return value * _SIZE_UNITS[unit]


# ---------------------------------------------------------------- printing
def fmt_duration(seconds: float | None) -> str:
    """``45s``, ``3m05s``, ``2h07m``; ``?`` when unknown."""
    if seconds is None or math.isnan(seconds):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def fmt_hours(seconds: float) -> str:
    """Hours as a number: two decimals, or three significant digits below 0.1 (CPU-sized test runs)."""
    h = seconds / 3600
    return f"{h:.2f}" if h >= 0.1 or h == 0 else f"{h:.3g}"


def fmt_size(n: float) -> str:
    """Bytes in the decimal unit that reads best: ``1.2 GB``."""
    for unit, scale in _SIZE_NAMES:
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n / 1e3:,.1f} kB"
