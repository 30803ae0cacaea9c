"""The plan file's growth knobs: ``max_trials`` per phase and ``fit.max_growth``, read and refused in one line."""
from __future__ import annotations

import pytest
import yaml

from search.plan.schema import load_plan
from search.spec import SpecError
from tests.search.plan.test_plan_run import write_plan


def rewrite(plan, **changes):
    raw = yaml.safe_load(plan.read_text())
    for key, value in changes.items():
        if key == "fit":
            raw["fit"] = {**raw["fit"], **value}
        else:
            raw[key] = value
    plan.write_text(yaml.safe_dump(raw))
    return plan


def test_growth_knobs_are_read(tmp_path):
    plan = load_plan(write_plan(tmp_path, tmp_path / "data", growth=2.5,
                                entries=["proxy", "full", {"study": "tune", "max_trials": 7}]))
    assert plan.fit.max_growth == 2.5
    assert [p.max_trials for p in plan.phases] == [None, None, 7]
    assert load_plan(write_plan(tmp_path / "plain", tmp_path / "data")).fit.max_growth == 1


@pytest.mark.parametrize("changes, words", [
    ({"fit": {"max_growth": 0.5}}, "fit.max_growth"),
    ({"fit": {"max_growth": "lots"}}, "fit.max_growth"),
    ({"phases": ["proxy", "full", {"study": "tune", "max_trials": 0}]}, "phases[2].max_trials"),
    ({"phases": ["proxy", "full", {"study": "tune", "max_trial": 3}]}, "max_trial"),
])
def test_bad_growth_knobs_are_one_line_errors(tmp_path, changes, words):
    plan = rewrite(write_plan(tmp_path, tmp_path / "data"), **changes)
    with pytest.raises(SpecError) as e:
        load_plan(plan)
    assert words in str(e.value) and "\n" not in str(e.value)
