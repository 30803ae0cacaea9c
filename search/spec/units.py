"""Counts (``11.5M``, ``800k``) and durations (``2h``, ``1h30m``) in a spec: ``facenet.units`` reads them;
here a mistake is a ``SpecError`` like any other in a spec."""
from __future__ import annotations

import functools
from typing import Callable, TypeVar

from facenet import units

from .schema import SpecError

T = TypeVar("T")


def _in_spec(parse: Callable[[int | float | str], T]) -> Callable[[int | float | str], T]:
    @functools.wraps(parse)
    def read(value: int | float | str) -> T:
        try:
            return parse(value)
        except units.UnitError as e:
            raise SpecError(str(e)) from None
    return read


parse_count = _in_spec(units.parse_count)
parse_duration = _in_spec(units.parse_duration)
