"""Counts (``11.5M``, ``800k``) and durations (``2h``, ``1h30m``) in a spec: ``facenet.units`` reads them;
here a mistake is a ``SpecError`` like any other in a spec."""
from __future__ import annotations

from facenet import units

from .schema import SpecError


def parse_count(value: int | float | str) -> int:
    """``11500000``, ``11.5M``, ``800k``, ``1.2e7``, ``"11_500_000"`` -> a positive whole number."""
    try:
        return units.parse_count(value)
    except units.UnitError as e:
        raise SpecError(str(e)) from None


def parse_duration(value: int | float | str) -> float:
    """Seconds from ``3600``, ``"2h"``, ``"30m"``, ``"1h30m"``, ``"1.5d"``."""
    try:
        return units.parse_duration(value)
    except units.UnitError as e:
        raise SpecError(str(e)) from None
