"""The objective in-process on tiny synthetic faces: the cap is checked before any data is
touched, the median rule prunes, a NaN loss prunes with its reason, an out-of-memory trial
fails with its batch size while the worker goes on, and every trial keeps its record."""
from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from facenet.eval.stats import ScoredPairs
from search.record import FAIL_REASON, TrialRecord
from search.run.objective import Objective
from search.spec import build_pruner, build_sampler, parse_spec
from search.run.worker import optimize_until
from search.spec import load_spec
from search.storage import open_storage
from tests.search.run.test_workers import write_spec


def make_spec(data, **over):
    raw = {
        "name": "obj",
        "data": {"train": str(data / "train1"), "val": str(data / "val")},
        "fixed": {"resolution": 32, "model": "resnet_w", "width": 0.125, "n_out": 32, "batch_size": 8,
                  "n_per_class": 2, "workers": 0, "augment": "none", "device": "cpu"},
        "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
        "budget": {"n_trials": 3, "epochs": 3},
    }
    raw.update(over)
    return parse_spec(raw)


def run(spec, tmp_path, n_trials=None, enqueue=()):
    study = optuna.create_study(sampler=build_sampler(spec), pruner=build_pruner(spec))
    for point in enqueue:
        study.enqueue_trial(point)
    optimize_until(study, Objective(spec, tmp_path / "runs", "cpu", log=lambda m: None),
                   n_trials or spec.n_trials, log=lambda m: None)
    return study


def test_oversized_model_is_pruned_before_any_data_is_touched(tmp_path):
    missing = tmp_path / "no-such-data"          # any data access would fail loudly
    spec = make_spec(missing, fixed={"model": "resnet34", "resolution": 224},
                     space={"n_out": {"type": "categorical", "choices": [512, 1024]}})
    study = run(spec, tmp_path, n_trials=2)
    for t in study.trials:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["param_count"] > 11_500_000
        assert "over the 11,500,000 cap (not trained)" in t.user_attrs["prune_reason"]
        assert TrialRecord.of(t).pruned_by == "cap" and not TrialRecord.of(t).trained
        assert t.constraints["param_cap"] > 0
        assert t.user_attrs["pruned_by"] == "cap"
        assert not t.intermediate_values
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))


def test_trial_record_and_feasible_constraint(synth_data, tmp_path):
    study = run(make_spec(synth_data), tmp_path, n_trials=1)
    t = study.trials[0]
    assert t.state == TrialState.COMPLETE
    assert t.constraints["param_cap"] <= 0
    assert t.user_attrs["config"]["lr"] == t.params["lr"]
    assert [h["epoch"] for h in t.user_attrs["history"]] == [1, 2, 3]
    assert set(t.user_attrs["history"][0]) == {"epoch", "loss", "val_eer", "lr", "seconds"}
    assert t.user_attrs["device"] == "cpu" and t.user_attrs["seconds"] > 0
    assert t.value == min(t.intermediate_values.values())
    # the best epoch's interval, and its scores kept for paired comparisons (facesearch best)
    r = TrialRecord.of(t)
    low, high = r.val_eer_ci
    assert low <= t.value <= high   # (equal only where every resample gives one EER, e.g. 0 %)
    again = ScoredPairs.load(r.val_scores).interval()
    assert (again.eer, again.low, again.high) == (t.value, low, high)


@pytest.mark.parametrize("pruner", [{"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
                                    {"name": "percentile", "percentile": 50.0, "n_startup_trials": 2,
                                     "n_warmup_steps": 1}])
def test_median_rule_prunes_a_weak_trial(synth_data, tmp_path, pruner):
    # Two finished trials below any EER (-1) from every epoch on: a real trial, whatever EER it gets,
    # is worse than their median and stops after its first epoch; the trial records which rule pruned it.
    spec = make_spec(synth_data, pruner=pruner)
    study = optuna.create_study(sampler=build_sampler(spec), pruner=build_pruner(spec))
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(params={"lr": 5e-3}, distributions={"lr": lr}, value=-1.0,
                                                  intermediate_values={e: -1.0 for e in (1, 2, 3)}))
    optimize_until(study, Objective(spec, tmp_path / "runs", "cpu", log=lambda m: None), 3, log=lambda m: None)
    weak = study.trials[2]
    assert weak.state == TrialState.PRUNED, weak.intermediate_values
    assert weak.user_attrs["prune_reason"].startswith(f"{pruner['name']} rule at epoch 1")
    assert TrialRecord.of(weak).pruned_by == pruner["name"] and TrialRecord.of(weak).trained
    assert list(weak.intermediate_values) == [1]
    # no RunResult for a pruned trial: its interval comes from the scores its best (only) epoch left
    low, high = TrialRecord.of(weak).val_eer_ci
    assert low <= weak.intermediate_values[1] <= high
    assert ScoredPairs.load(TrialRecord.of(weak).val_scores).interval().eer == weak.intermediate_values[1]


@pytest.mark.parametrize("name, epochs", [("successive_halving", 1), ("successive_halving", 2), ("hyperband", 1)])
def test_rung_pruners_never_prune_a_trial_at_its_last_epoch(synth_data, tmp_path, name, epochs):
    # Three trials that reached rung 0 (epoch 1) below any EER: the rule stops whatever joins them there.
    # With epochs left (2) the trial is pruned at that rung; at its last epoch (1) it trained its whole
    # budget and completes, its rung still recorded. (Hyperband over 1 epoch has one bracket; over more,
    # trials fall into brackets by a hash of their number.)
    pruner = {"name": name, "reduction_factor": 2}   # epochs are the resource: rung 0 at epoch 1
    spec = make_spec(synth_data, pruner=pruner, budget={"n_trials": 4, "epochs": epochs})
    study = optuna.create_study(sampler=build_sampler(spec), pruner=build_pruner(spec))
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(params={"lr": 5e-3}, distributions={"lr": lr}, value=-1.0,
                                                  intermediate_values={1: -1.0},
                                                  system_attrs={"completed_rung_0": -1.0}))
    optimize_until(study, Objective(spec, tmp_path / "runs", "cpu", log=lambda m: None), 4, log=lambda m: None)
    t = study.trials[3]
    assert list(t.intermediate_values) == [1] and "completed_rung_0" in t.system_attrs
    if epochs == 1:
        assert t.state == TrialState.COMPLETE and "pruned_by" not in t.user_attrs
        assert t.value == t.intermediate_values[1]
    else:
        assert t.state == TrialState.PRUNED and TrialRecord.of(t).pruned_by == name


def test_nan_loss_prunes_the_trial_and_the_study_goes_on(synth_data, tmp_path):
    spec = make_spec(synth_data, fixed={**make_spec(synth_data).fixed, "optimizer": "sgd", "momentum": 0.0},
                     space={"lr": {"type": "float", "low": 1e-3, "high": 1e30, "log": True}})
    study = run(spec, tmp_path, n_trials=2, enqueue=[{"lr": 1e30}, {"lr": 1e-3}])
    assert study.trials[0].state == TrialState.PRUNED
    assert "training loss became nan" in study.trials[0].user_attrs["prune_reason"]
    assert TrialRecord.of(study.trials[0]).pruned_by == "non-finite loss"
    assert study.trials[1].state == TrialState.COMPLETE


def test_out_of_memory_fails_the_trial_and_the_worker_goes_on(synth_data, tmp_path, monkeypatch):
    """No GPU here: the CUDA out-of-memory error is injected into the first trial's training."""
    import search.run.objective as objective

    real_fit, calls = objective.fit, []

    def fit_that_runs_out_of_memory_once(config, **kw):
        calls.append(config.batch_size)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_fit(config, **kw)

    monkeypatch.setattr(objective, "fit", fit_that_runs_out_of_memory_once)
    study = run(make_spec(synth_data), tmp_path, n_trials=2)
    assert study.trials[0].state == TrialState.FAIL
    assert "CUDA out of memory at batch_size 8" in study.trials[0].user_attrs["fail_reason"]
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 2


@pytest.mark.parametrize("loss", ["arcface", "triplet_hard"])
def test_conditional_params_reach_the_config(synth_data, tmp_path, loss):
    spec = make_spec(synth_data, space={
        "loss": {"type": "categorical", "choices": ["softmax", loss]},
        "margin": {"type": "float", "low": 0.2, "high": 0.4, "when": {"loss": loss}},
    }, budget={"n_trials": 1, "epochs": 1})
    study = run(spec, tmp_path, enqueue=[{"loss": loss, "margin": 0.25}])
    t = study.trials[0]
    assert t.state == TrialState.COMPLETE
    assert t.user_attrs["config"]["loss"] == loss and t.user_attrs["config"]["margin"] == 0.25


@pytest.fixture
def data(synth_data, tmp_path) -> Path:
    return Path(shutil.copytree(synth_data, tmp_path / "data"))


def test_a_scan_error_during_a_study_is_the_trials_failure_reason(data, tmp_path):
    """Met after the preflight (the loop appears while the study runs): recorded on the trial, study stopped."""
    spec = load_spec(write_spec(tmp_path / "s.yaml", data, "looped", n_trials=2))
    loop = data / "train1" / "id00001" / "loop.jpg"
    loop.symlink_to(loop.name)
    study = optuna.create_study(study_name="looped", storage=open_storage(str(tmp_path / "s.journal")))
    with pytest.raises(Exception, match="Too many levels of symbolic links"):
        optimize_until(study, Objective(spec, tmp_path / "runs", "cpu", log=lambda m: None), 2, log=lambda m: None)
    (failed,) = study.get_trials(states=(TrialState.FAIL,))
    assert str(loop) in failed.user_attrs[FAIL_REASON]
