"""The search space at work with real Optuna studies (in memory): conditional params, dependency order,
enqueued points first, and the smallest parameter count a space of models reaches."""
from __future__ import annotations

import optuna
import pytest

from facenet.config import TrainConfig
from facenet.models import count_params
from search.spec import smallest_param_count, suggest
from search.spec import SpecError, build_sampler, parse_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)

LOSSES = {"name": "losses", "fixed": {"optimizer": "sgd", "resolution": 48},
          "space": {
              # listed before what it depends on: suggestion order follows the dependencies, not the file
              "hard_rank": {"type": "int", "low": 1, "high": 20, "when": {"loss": "triplet_hard"}},
              "margin": {"type": "float", "low": 0.1, "high": 0.5, "when": {"loss": ["arcface", "cosface",
                                                                                     "triplet_hard"]}},
              "scale": {"type": "categorical", "choices": [30, 64], "when": {"loss": ["arcface", "cosface"]}},
              "loss": {"type": "categorical", "choices": ["softmax", "arcface", "cosface", "triplet_hard"]},
              # a chain: exists only for arcface with scale 64
              "easy_margin": {"type": "categorical", "choices": [False, True], "when": {"scale": 64}},
              # conditions on a fixed field
              "momentum": {"type": "float", "low": 0.8, "high": 0.95, "when": {"optimizer": "sgd"}},
              "nesterov": {"type": "categorical", "choices": [False, True], "when": {"optimizer": "adam"}},
              "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
              "batch_size": {"type": "int", "low": 50, "high": 200, "step": 50}},
          "sampler": {"name": "random", "seed": 3},
          "enqueue": [{"loss": "softmax", "lr": 0.001, "batch_size": 100},
                      {"loss": "arcface", "scale": 64, "margin": 0.5}]}


def test_conditional_params_exist_only_when_their_condition_holds():
    spec = parse_spec(LOSSES)
    study = optuna.create_study(sampler=build_sampler(spec))
    for _ in range(300):
        trial = study.ask()
        params = suggest(trial, spec.space, spec.fixed)
        assert params == trial.params
        study.tell(trial, 0.0)
    seen = [t.params for t in study.trials]
    assert {p["loss"] for p in seen} == {"softmax", "arcface", "cosface", "triplet_hard"}
    for p in seen:
        assert ("margin" in p) == (p["loss"] in ("arcface", "cosface", "triplet_hard"))
        assert ("scale" in p) == (p["loss"] in ("arcface", "cosface"))
        assert ("hard_rank" in p) == (p["loss"] == "triplet_hard")
        assert ("easy_margin" in p) == (p.get("scale") == 64)
        assert "momentum" in p and "nesterov" not in p
        assert 50 <= p["batch_size"] <= 200 and p["batch_size"] % 50 == 0 and 1e-4 <= p["lr"] <= 1e-2
    assert any("easy_margin" in p for p in seen) and any("scale" in p and "easy_margin" not in p for p in seen)


def test_enqueued_points_are_tried_first():
    spec = parse_spec({**LOSSES, "sampler": {"name": "tpe", "seed": 0}})
    study = optuna.create_study(sampler=build_sampler(spec))
    for point in spec.enqueue:
        study.enqueue_trial(point)
    study.optimize(lambda t: spec.to_config(suggest(t, spec.space, spec.fixed)).lr, n_trials=4)
    first, second = study.trials[0].params, study.trials[1].params
    assert {k: first[k] for k in spec.enqueue[0]} == spec.enqueue[0]
    assert {k: second[k] for k in spec.enqueue[1]} == spec.enqueue[1] and "margin" in second
    assert "margin" not in first and "scale" not in first


def test_fixed_trial_and_config():
    spec = parse_spec(LOSSES)
    params = suggest(optuna.trial.FixedTrial({"loss": "cosface", "margin": 0.35, "scale": 30, "momentum": 0.9,
                                              "lr": 0.002, "batch_size": 150}), spec.space, spec.fixed)
    config = spec.to_config(params)
    assert (config.loss, config.margin, config.scale, config.momentum, config.batch_size, config.resolution) == \
        ("cosface", 0.35, 30.0, 0.9, 150, 48)


def models_spec(space: dict, **fixed) -> dict:
    return {"name": "arch", "fixed": {"resolution": 48, **fixed}, "space": space}


def test_smallest_param_count_over_a_space_of_models():
    spec = parse_spec(models_spec({
        "model": {"type": "categorical", "choices": ["resnet18", "resnet34", "mobilenet_v2", "resnet_w",
                                                     "efficientnet_b0", "tiny_vit_11m"]},
        "width": {"type": "categorical", "choices": [0.5, 1.0], "when": {"model": ["mobilenet_v2", "resnet_w"]}},
        "depth": {"type": "categorical", "choices": [18, 34], "when": {"model": "resnet_w"}},
        "n_out": {"type": "int", "low": 128, "high": 512, "step": 128},
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}))
    count, params = smallest_param_count(spec)
    brute = min((count_params(TrainConfig(model=m, width=w, depth=d, n_out=n, resolution=48)), m, w, n)
                for m in ("resnet18", "resnet34", "efficientnet_b0", "tiny_vit_11m")
                for w in (1.0,) for d in (18,) for n in (128, 256, 384, 512))
    assert count < brute[0]                               # a narrow model wins over every full-width one
    assert params == {"model": params["model"], "width": 0.5, "n_out": 128} | \
        ({"depth": 18} if params["model"] == "resnet_w" else {})
    assert count == count_params(spec.to_config(params))


def test_smallest_param_count_uses_range_endpoints_and_fixed_fields():
    spec = parse_spec(models_spec({"width": {"type": "float", "low": 0.25, "high": 1.0},
                                   "n_out": {"type": "int", "low": 64, "high": 512}}, model="resnet_w"))
    count, params = smallest_param_count(spec)
    assert params == {"width": 0.25, "n_out": 64}
    assert count == count_params(TrainConfig(model="resnet_w", width=0.25, n_out=64, resolution=48))
    # nothing shapes the model: the fixed one is the answer
    plain = parse_spec(models_spec({"lr": {"type": "float", "low": 1e-4, "high": 1e-2}}, model="resnet18"))
    assert smallest_param_count(plain) == (11_439_168, {})


def test_a_space_where_nothing_fits_the_cap():
    spec = parse_spec(models_spec({"model": {"type": "categorical", "choices": ["resnet34", "resnet18"]}},
                                  n_out=1024))
    count, params = smallest_param_count(spec)
    assert count > spec.param_cap and params == {"model": "resnet18"}


def test_a_space_where_nothing_builds():
    spec = parse_spec(models_spec({"width": {"type": "categorical", "choices": [0.0, -1.0]}}, model="resnet_w"))
    with pytest.raises(SpecError, match="space: no configuration in the space builds a model: resnet_w: width"):
        smallest_param_count(spec)
