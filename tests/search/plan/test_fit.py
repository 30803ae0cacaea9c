"""The fitting rule on its own: the shipped course plan priced from the shipped CPU calibration at the course's
data sizes (no data read, nothing trained), fitted at budgets from its floors up."""
from __future__ import annotations

from pathlib import Path

import pytest

from search.builtin import resolve_plan
from search.cost.calibration import CalibrationTable
from search.cost.datasize import DataSizes
from search.cost.plan import priced_phases
from search.plan.fit import OverBudgetFit
from search.plan.runner import Run, _only_device, make_fit
from search.plan.schema import load_plan

CALIBRATION = Path(__file__).parents[3] / "benchmarks" / "calibration-cpu.json"


@pytest.fixture(scope="module")
def course():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACESEARCH_DATA", "/nonexistent/course-data")   # priced from the sizes below, never read
        plan = load_plan(resolve_plan("course"))
        table = CalibrationTable.load(CALIBRATION)
        sizes = DataSizes(table.census)
        for size in ("train1=2882x174", "train2=949x35", "val=50000"):
            sizes.add_override(size)
        label = _only_device(table, "")

        def fit(hours: float):
            return make_fit(Run(plan, None, hours, 4, None, "cpu", print, print), table, label, sizes, None, 0.0)

        with pytest.raises(OverBudgetFit) as refused:
            fit(1.0)
        _, pricer = priced_phases([e.path for e in plan.phases], table, label, sizes)
        yield {"plan": plan, "fit": fit, "floors_h": refused.value.fit.total_s() / 3600, "pricer": pricer}


def test_fits_keep_their_floors_and_give_a_cut_proxy_its_fidelity_back_before_growing_trials(course):
    """Growth past the written trials comes last: with it undone, one notch more of a cut proxy's fidelity does not
    fit (an earlier fit spent that room on 20-40 more proxy trials at the lowest fidelity)."""
    plan, pricer = course["plan"], course["pricer"]
    for scale in (1.1, 1.35, 1.6, 2.0):
        hours = course["floors_h"] * scale
        fit = course["fit"](hours)
        assert fit.total_s() <= hours * 3600 + 1e-3
        for f in fit.fits:
            assert f.phase.trials >= f.min_trials()
            if f.base_epochs():
                assert f.epochs() >= f.min_epochs(plan.fit)
        for f in fit.fits:
            f.phase.trials = min(f.phase.trials, f.wanted_trials)
        for f in fit.fits:
            cut = (f.resolution, f.identities)
            if not f.proxy_for or cut == (None, None):
                continue
            f.resolution = f.identities = None                    # the ladder down from the spec's own fidelity
            ladder = [(None, None)] + f.notches(plan.fit, pricer)
            up = ladder[ladder.index(cut) - 1]
            f.set_fidelity(pricer, *up)
            assert fit.total_s() > hours * 3600, f"{f.name} at {hours:.1f} h: {cut} -> {up} fits too"
            f.set_fidelity(pricer, *cut)
