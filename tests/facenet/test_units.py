"""One units module: counts, durations and sizes parsed and printed the same way in facenet and search."""
from __future__ import annotations

import math

import pytest

from facenet.errors import UserError
from facenet.units import (UnitError, fmt_duration, fmt_hours, fmt_size, parse_count, parse_duration,
                           parse_size)
from search.spec import SpecError, parse_count as spec_count, parse_duration as spec_duration


def test_parsers_read_what_users_write():
    assert parse_count("11.5M") == parse_count(11_500_000) == parse_count("11_500_000") == 11_500_000
    assert parse_count("800k") == 800_000
    assert parse_duration("1h30m") == parse_duration("90m") == parse_duration(5400) == 5400.0
    assert parse_size("50", "X") == parse_size("50G", "X") == 50e9 and parse_size("500M", "X") == 500e6
    for bad in (lambda: parse_count("1.5"), lambda: parse_duration("2 weeks"), lambda: parse_size("lots", "X")):
        with pytest.raises(UnitError) as e:
            bad()
        assert isinstance(e.value, UserError) and "\n" not in str(e.value)   # one line, exit status 2


def test_specs_get_the_same_values_and_spec_errors():
    assert spec_count("11.5M") == parse_count("11.5M") and spec_duration("2h") == parse_duration("2h")
    with pytest.raises(SpecError, match="bad count"):
        spec_count("many")


def test_one_way_to_print():
    assert [fmt_duration(s) for s in (45, 185, 7620)] == ["45s", "3m05s", "2h07m"]
    assert fmt_duration(None) == fmt_duration(math.nan) == "?"
    assert (fmt_hours(5400), fmt_hours(36), fmt_hours(0)) == ("1.50", "0.01", "0.00")
    assert (fmt_size(1.25e9), fmt_size(98e9), fmt_size(2e3)) == ("1.2 GB", "98.0 GB", "2.0 kB")
