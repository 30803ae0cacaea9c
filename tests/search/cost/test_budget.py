"""Costs with real short trials on tiny synthetic faces: the probe and the estimate follow the course
sampler, a GPU-hour budget stops a worker when the next trial's estimate does not fit what is left,
two workers share one calibration (one probe, not two), and ``study status`` shows spent and left."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from facenet.data.sampler import chosen_identities, training_set
from facenet.probe import device_label, probe, speed_key
from search.cost.calibrate import calibrate
from search.cost.calibration import SharedCalibration, stored_table
from search.cost.datasize import DataSizes
from search.cost.estimate import estimate
from search.record import CALIBRATION_STUDY, SPEED, SPEED_KEY, TrialRecord
from search.run.worker import run_worker
from search.spec import SpecError, load_spec, parse_spec
from search.storage import open_storage
from tests.search.cli.test_cli_errors import cli


def write_spec(path: Path, data: Path, name: str, budget: dict, **extra) -> Path:
    spec = {
        "name": name,
        "data": {"train": str(data / "train1"), "val": str(data / "val")},
        "fixed": {"resolution": 32, "model": "resnet_w", "width": 0.125, "n_out": 32, "batch_size": 8,
                  "n_per_class": 2, "workers": 0, "augment": "none", "max_val_pairs": 80, "device": "cpu"},
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "budget": budget,
        **extra,
    }
    path.write_text(yaml.safe_dump(spec))
    return path


# ------------------------------------------------------------------ facenet: subset, sampler count, probe
def test_identity_subset_is_fixed_nested_and_renumbered():
    a, b = chosen_identities(100, 10), chosen_identities(100, 30)
    assert len(a) == 10 and set(a) <= set(b) and list(chosen_identities(100, 0)) == list(range(100))
    labels = np.repeat(np.arange(100), 6)
    train = training_set(labels, batch_size=4, n_per_class=2, max_img_per_cls=4, seed=3, max_identities=10)
    assert train.n_classes == 10 and set(train.labels[train.labels >= 0]) == set(range(10))
    drawn = np.concatenate(train.sampler.batches())
    assert set(np.unique(labels[drawn])) <= set(a), "only the chosen identities are drawn"
    assert train.images_per_epoch == len(drawn) == len(train.sampler) * 8


def test_probe_and_estimate_use_the_real_run(tiny_config):
    speed = probe(tiny_config, steps=3, warmup=1, eval_images=64, min_seconds=0.2)
    assert speed.train_images_per_s > 0 and speed.eval_images_per_s > 0 and speed.steps >= 3
    assert speed.device == device_label("cpu") and "threads" in speed.device
    assert speed_key(tiny_config) == {"model": "resnet_w", "width": 0.125, "depth": 18, "block": "basic",
                                      "n_out": 32, "resolution": 32, "batch_images": 16}
    assert "width" not in speed_key(tiny_config.replace(model="resnet18"))   # resnet18 has no width knob
    cost = estimate(tiny_config, speed.to_dict(), DataSizes())
    from facenet.train import Trainer

    trainer = Trainer(tiny_config, log=lambda m: None)
    trainer.loader.close()
    assert cost.images_per_epoch == len(trainer.sampler) * 16   # the sampler's own count, not a guess
    assert cost.val_images == len(trainer.verifier.images)
    assert cost.seconds == pytest.approx(cost.setup_s + 2 * cost.epoch_s)


# ------------------------------------------------------------------ the spec
def test_budget_hours_and_promotion_in_specs():
    base = {"name": "s", "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2}}}
    assert parse_spec({**base, "budget": {"hours": 60}}).hours == 60.0
    assert parse_spec({**base, "budget": {"hours": "90m"}}).hours == 1.5
    with pytest.raises(SpecError, match=r"budget.hours: must be > 0 GPU-hours, got 0"):
        parse_spec({**base, "budget": {"hours": 0}})
    with pytest.raises(SpecError, match=r"budget.hours: bad duration 'soon'"):
        parse_spec({**base, "budget": {"hours": "soon"}})
    promoted = parse_spec({**base, "from": {"study": "p", "top": 4}})
    assert promoted.from_.top == 4 and promoted.n_trials == 4          # a promotion runs its top k
    with pytest.raises(SpecError, match=r"from.top: promotes whole trials; drop from.params"):
        parse_spec({**base, "from": {"study": "p", "top": 4, "params": ["lr"]}})
    # studies made before `top` existed keep their signature (the same hash of the spec as written)
    plain = parse_spec({**base, "from": {"study": "p"}})
    written = {"data": {}, "fixed": {}, "space": {"lr": plain.space["lr"].to_dict()},
               "from": {"study": "p", "params": None}}
    assert plain.space_signature() == hashlib.sha256(json.dumps(written, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------ budgets in workers
def test_budget_stops_new_trials_when_the_next_estimate_does_not_fit(synth_data, tmp_path):
    url = str(tmp_path / "s.journal")
    probe_spec = write_spec(tmp_path / "probe.yaml", synth_data, "b", {"n_trials": 1, "epochs": 2})
    table = calibrate([probe_spec], open_storage(url), device="cpu", steps=3, warmup=1, eval_images=64,
                      log=lambda m: None, min_seconds=0.2)
    spec = load_spec(probe_spec)
    config = spec.to_config({"lr": 1e-3})
    one = estimate(config, table.exact(device_label("cpu"), speed_key(config)), DataSizes()).seconds
    budget = 2.5 * one                            # two or three trials' worth, whatever their real time
    spec = load_spec(write_spec(tmp_path / "s.yaml", synth_data, "b", {"epochs": 2, "hours": budget / 3600}))
    log: list[str] = []
    ran = run_worker(spec, url, device="cpu", log=log.append)

    trials = optuna.load_study(study_name="b", storage=open_storage(url)).get_trials(deepcopy=False)
    assert ran == len(trials) - 1 >= 1
    spent = 0.0
    for t in trials[:-1]:                         # each trial that ran fit what was left when it started
        r = TrialRecord.of(t)
        assert t.state == TrialState.COMPLETE
        assert r.probe_seconds == 0.0, "the calibration is reused, not probed again"
        assert r.estimate.seconds <= budget - spent + 1e-6
        assert r.seconds is not None and r.seconds > 0   # the real time, next to the estimate
        spent += r.spent
    refused = TrialRecord.of(trials[-1])
    assert trials[-1].state == TrialState.FAIL and refused.reason.startswith("budget: estimated")
    assert refused.estimate.seconds > budget - spent, "stopped only because the next estimate did not fit"
    assert refused.seconds is None and not trials[-1].intermediate_values, "the refused trial never trained"
    assert any("this worker stops" in line for line in log)


def test_concurrent_workers_probe_a_point_once(tiny_config, tmp_path):
    """Two workers need the same point at once: the first claim probes, the other waits for its result."""
    storage = open_storage(str(tmp_path / "s.journal"))
    probes, b_waits = [], threading.Event()

    def a_probe(config, log):   # the real probe, started once B is seen waiting on A's claim
        assert b_waits.wait(120), "worker B never waited for A's claim"
        probes.append("a")
        return probe(config, steps=2, warmup=1, eval_images=32, min_seconds=0.2).to_dict()

    def b_probe(config, log):
        probes.append("b")
        return probe(config, steps=2, warmup=1, eval_images=32, min_seconds=0.2).to_dict()

    a = SharedCalibration(storage, log=lambda m: None, probe=a_probe, poll=0.05)
    b = SharedCalibration(storage, log=lambda m: b_waits.set() if m.startswith("waiting for") else None,
                          probe=b_probe, poll=0.05)
    results = {}
    thread = threading.Thread(target=lambda: results.update(a=a.speed_for(tiny_config)))
    thread.start()
    study = optuna.create_study(study_name=CALIBRATION_STUDY, storage=storage, load_if_exists=True)
    for _ in range(1200):   # until A's claim is in the storage (bounded: 60 s)
        if any(SPEED_KEY in t.user_attrs for t in study.get_trials(deepcopy=False)):
            break
        b_waits.wait(0.05)
    results["b"] = b.speed_for(tiny_config)
    thread.join(120)
    assert probes == ["a"]
    assert results["a"][0] == results["b"][0] and results["a"][1] > 0 and results["b"][1] == 0.0
    assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.COMPLETE]


def test_two_workers_share_one_calibration_and_status_shows_the_budget(synth_data, tmp_path):
    spec_path = write_spec(tmp_path / "s.yaml", synth_data, "pair", {"n_trials": 4, "epochs": 1, "hours": 1})
    url = str(tmp_path / "s.journal")
    out = subprocess.run([sys.executable, "-m", "search.cli", "study", "run", str(spec_path), "--workers",
                          "2", "--storage", url], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    storage = open_storage(url)
    trials = optuna.load_study(study_name="pair", storage=storage).get_trials(deepcopy=False)
    assert all(TrialRecord.of(t).estimate is not None for t in trials)
    assert sum(TrialRecord.of(t).probe_seconds > 0 for t in trials) == 1, "one probe, not two"
    entries = optuna.load_study(study_name=CALIBRATION_STUDY, storage=storage).get_trials(deepcopy=False)
    measured = [t for t in entries if t.state == TrialState.COMPLETE]
    assert len(measured) == 1 and SPEED in measured[0].user_attrs
    assert len({t.user_attrs[SPEED_KEY] for t in entries}) == 1
    assert len(stored_table(storage).entries) == 1

    status = cli("study", "status", "pair", "--storage", url)
    assert status.returncode == 0, status.stderr
    assert "est." in status.stdout and "GPU-hours: spent 0.0" in status.stdout and "of 1 (" in status.stdout
    studies = cli("studies", "--storage", url)
    assert "pair" in studies.stdout and CALIBRATION_STUDY not in studies.stdout


def test_an_estimate_follows_the_pace_the_study_measured_at_other_points_until_its_own_point_has_run():
    """The probe is one moment: a point no trial has run yet is scaled by the pace of the study's other points,
    and a point with trials of its own by theirs alone."""
    from search.cost.budget import CostGuard
    from search.record import ESTIMATE, SECONDS, Estimate

    study = optuna.create_study()

    def ended(point: str, estimated: float, took: float) -> None:
        study.add_trial(optuna.trial.create_trial(
            value=20.0, intermediate_values={1: 25.0, 2: 20.0}, user_attrs={
                ESTIMATE: Estimate(2, 100, 50, 0.0, estimated / 2, point=point).to_dict(), SECONDS: took}))

    guard = CostGuard(None, study, None, None, log=lambda m: None)
    fresh = Estimate(2, 100, 50, 1.0, 5.0, point="b")
    assert guard.as_recently_measured(fresh) == fresh                  # nothing measured yet
    ended("a", 10.0, 20.0)
    ended("a", 10.0, 30.0)
    paced = guard.as_recently_measured(fresh)
    assert paced.scale == pytest.approx(2.5) and paced.seconds == pytest.approx(2.5 * fresh.seconds)
    ended("b", 10.0, 5.0)
    assert guard.as_recently_measured(fresh).scale == pytest.approx(0.5)   # its own point's pace wins
