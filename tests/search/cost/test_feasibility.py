"""One feasibility rule: calibration, the planner, the cost guard and the objective agree, point by point,
on which configs can train (``facenet.runnable.feasibility``): runnable ones, an infeasible one (a triplet
loss with ``n_per_class`` 1) and ones over the cap. Real calibration probes on tiny synthetic faces."""
from __future__ import annotations

import itertools

import optuna
import pytest
import yaml

from facenet.probe import speed_key
from facenet.runnable import feasibility
from search import record as rec
from search.cost.budget import CostGuard
from search.cost.calibrate import calibrate, probe_points
from search.cost.calibration import SharedCalibration
from search.cost.datasize import DataSizes
from search.cost.plan import Pricer, build_plan, choose_device
from search.run.objective import Objective
from search.spec import load_spec
from search.storage import open_storage

CAP = 200_000   # resnet_w at width 0.125 has 178,792 parameters with n_out 32, 209,992 with 512
GRID = {"loss": ["softmax", "triplet"], "n_per_class": [1, 2], "n_out": [32, 512]}


@pytest.fixture(scope="module")
def calibrated(synth_data, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("feasible")
    path = tmp / "grid.yaml"
    path.write_text(yaml.safe_dump({
        "name": "grid", "data": {"train": str(synth_data / "train1"), "val": str(synth_data / "val")},
        "fixed": {"resolution": 32, "model": "resnet_w", "width": 0.125, "batch_size": 8, "workers": 0,
                  "augment": "none", "max_val_pairs": 40, "device": "cpu", "epochs": 1},
        "space": {k: {"type": "categorical", "choices": v} for k, v in GRID.items()},
        "constraint": {"param_cap": CAP}, "sampler": {"name": "random", "seed": 0}, "pruner": {"name": "none"},
        "budget": {"n_trials": 4}}))
    storage = open_storage(str(tmp / "s.journal"))
    table = calibrate([path], storage, device="cpu", steps=2, warmup=1, eval_images=32, min_seconds=0.1,
                      log=lambda m: None)
    spec = load_spec(path)
    points = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]
    configs = [spec.base_config().replace(**p) for p in points]
    return {"path": path, "spec": spec, "storage": storage, "table": table, "configs": configs}


def test_the_grid_holds_every_kind_of_point(calibrated):
    kinds = {(f.runnable, f.over_cap) for f in (feasibility(c, CAP) for c in calibrated["configs"])}
    assert kinds == {(True, False), (False, False), (True, True)}   # trains, cannot run, over the cap
    triplet_one = calibrated["configs"][0].replace(loss="triplet", n_per_class=1)
    assert not feasibility(triplet_one, CAP).runnable and "n_per_class" in feasibility(triplet_one, CAP).reason


def test_calibration_planner_guard_and_objective_agree(calibrated):
    spec, storage, table, configs = (calibrated[k] for k in ("spec", "storage", "table", "configs"))
    trains = [feasibility(c, CAP).trains for c in configs]

    # calibration probes exactly the speed points of the configs that train
    probed = {str(speed_key(c)) for c in probe_points([calibrated["path"]], device="cpu")}
    assert probed == {str(speed_key(c)) for c, t in zip(configs, trains) if t}

    # the planner prices those (all measured) and gives the others no cost
    pricer = Pricer(table, choose_device(table, None), DataSizes(table.census))
    points = [pricer.price(c, CAP) for c in configs]
    assert [p.trains for p in points] == trains and not pricer.missing
    assert all((p.seconds() > 0) == t for p, t in zip(points, trains))

    # the guard estimates (from the stored calibration, no new probe) just the configs that train
    study = optuna.create_study(study_name="grid", storage=storage)
    calibration = SharedCalibration(storage, log=lambda m: None,
                                    probe=lambda c, log: pytest.fail(f"probed again: {speed_key(c)}"))
    for config, t in zip(configs, trains):
        guard = CostGuard(spec, study, calibration, config_for=lambda trial, c=config: c, log=lambda m: None)
        trial = study.ask()
        assert (guard.estimate(trial) is not None) == t
        assert (rec.ESTIMATE in study.trials[trial.number].user_attrs) == t

    # the objective prunes just the others, before reading any data, naming the rule
    objective = Objective(spec, log=lambda m: None)
    for config, t in zip(configs, trains):
        trial = study.ask()
        if t:
            objective._check_feasible(trial, config)
            continue
        with pytest.raises(optuna.TrialPruned):
            objective._check_feasible(trial, config)
        f = feasibility(config, CAP)
        assert study.trials[trial.number].user_attrs[rec.PRUNED_BY] == (rec.CAP if f.runnable else rec.INFEASIBLE)


def test_plan_prices_no_infeasible_point(calibrated):
    """Calibration never probes the triplet point with n_per_class 1, and the plan does not ask for it."""
    phases, _ = build_plan([calibrated["path"]], calibrated["table"], samples=24)
    (phase,) = phases
    assert any(not feasibility(c, CAP).runnable for c in phase.drawn)   # it was drawn ...
    for config, point in zip(phase.drawn, phase.points):
        assert point.trains == feasibility(config, CAP).trains   # ... and priced at nothing
        assert point.seconds() == 0 or point.trains
