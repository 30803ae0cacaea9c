"""Counts (``11.5M``, ``800k``) and durations (``2h``, ``1h30m``) as a spec or the command line writes them."""
from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from .schema import SpecError

_COUNT = re.compile(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgb]?)")
_COUNT_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}
_DURATION = re.compile(r"([0-9]*\.?[0-9]+)\s*([smhd])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_count(value: int | float | str) -> int:
    """``11500000``, ``11.5M``, ``800k``, ``1.2e7``, ``"11_500_000"`` -> a positive whole number."""
    bad = SpecError(f"bad count {value!r}: use a positive whole number, optionally with k, M or G "
                    f"(11.5M, 800k, 11500000)")
    if isinstance(value, bool):
        raise bad
    text = str(value).strip().lower().replace("_", "").replace(",", "")
    match = _COUNT.fullmatch(text)
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
    bad = SpecError(f"bad duration {value!r}: use seconds or a number with s, m, h or d (2h, 30m, 1h30m)")
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

