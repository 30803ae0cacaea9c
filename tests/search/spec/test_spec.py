"""Study specs: parsing, every validation error (one line, file and field named), ${VAR} expansion,
samplers and pruners, counts and durations, and ``from:`` chaining against a real in-memory Optuna storage."""
from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml

from search.spec import (SpecError, StudySpec, apply_from, build_pruner, build_sampler, load_spec, parse_count,
                         parse_duration, parse_spec)
from search.spec import suggest
from search.record import SPEC

optuna.logging.set_verbosity(optuna.logging.WARNING)

EXAMPLE = textwrap.dedent("""\
    name: losses
    description: Which loss wins at 48 px.
    data:
      train: ${FACESEARCH_DATA:-data/synth}/train1
      val: ${FACESEARCH_DATA:-data/synth}/val
      val_list: val_pairs.csv
    fixed: {resolution: 48, epochs: 3, model: resnet_w, width: 0.25}
    space:
      lr: {type: float, low: 1e-4, high: 1.0e-2, log: true}
      batch_size: {type: int, low: 50, high: 200, step: 50}
      loss: {type: categorical, choices: [softmax, arcface, cosface, triplet_hard]}
      margin: {type: float, low: 0.1, high: 0.5, when: {loss: [arcface, cosface, triplet_hard]}}
      scale: {type: categorical, choices: [30, 64], when: {loss: [arcface, cosface]}}
      hard_rank: {type: int, low: 1, high: 20, when: {loss: triplet_hard}}
    sampler: {name: tpe, seed: 0, n_startup_trials: 5}
    pruner: {name: median, n_startup_trials: 3, n_warmup_steps: 1}
    constraint: {param_cap: 11.5M}
    budget: {n_trials: 20, timeout: 2h, epochs: 3}
    enqueue:
      - {lr: 0.001, batch_size: 100, loss: softmax}
    keep_checkpoints: 2
    """)


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def base() -> dict:
    return yaml.safe_load(EXAMPLE.replace("1e-4", "1.0e-4"))


def error_of(tmp_path: Path, raw: dict | str) -> str:
    path = write(tmp_path, raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(SpecError) as e:
        load_spec(path)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


def test_valid_spec_round_trip(tmp_path, monkeypatch):
    monkeypatch.delenv("FACESEARCH_DATA", raising=False)
    spec = load_spec(write(tmp_path, EXAMPLE))
    assert spec.name == "losses" and spec.description == "Which loss wins at 48 px."
    assert spec.data == {"train": "data/synth/train1", "val": "data/synth/val", "val_list": "val_pairs.csv"}
    assert spec.fixed == {"resolution": 48, "epochs": 3, "model": "resnet_w", "width": 0.25}
    assert list(spec.space) == ["lr", "batch_size", "loss", "margin", "scale", "hard_rank"]
    lr = spec.space["lr"]
    assert (lr.type, lr.low, lr.high, lr.log) == ("float", 1e-4, 1e-2, True)   # 1e-4 read as a float, not text
    assert spec.space["batch_size"].step == 50 and spec.space["scale"].choices == (30, 64)
    assert spec.space["hard_rank"].when == {"loss": ("triplet_hard",)}
    assert spec.sampler == {"name": "tpe", "seed": 0, "n_startup_trials": 5}
    assert spec.pruner == {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1}
    assert (spec.param_cap, spec.n_trials, spec.timeout, spec.epochs) == (11_500_000, 20, 7200.0, 3)
    assert spec.enqueue == [{"lr": 0.001, "batch_size": 100, "loss": "softmax"}]
    assert spec.from_ is None and spec.keep_checkpoints == 2 and spec.source == tmp_path / "s.yaml"

    config = spec.base_config()
    assert (config.train_path, config.val_path, config.val_list) == ("data/synth/train1", "data/synth/val",
                                                                     "val_pairs.csv")
    assert (config.model, config.width, config.resolution, config.epochs) == ("resnet_w", 0.25, 48, 3)
    trial = spec.to_config({"lr": 0.003, "loss": "arcface", "margin": 0.4, "scale": 64})
    assert (trial.lr, trial.loss, trial.margin, trial.scale) == (0.003, "arcface", 0.4, 64.0)

    stored = json.loads(spec.to_json())
    assert stored["name"] == "losses" and stored["param_cap"] == 11_500_000 and stored["n_trials"] == 20
    assert stored["space"]["margin"] == {"type": "float", "low": 0.1, "high": 0.5,
                                         "when": {"loss": ["arcface", "cosface", "triplet_hard"]}}
    assert parse_spec(yaml.safe_load(EXAMPLE.replace("1e-4", "1.0e-4"))).space == spec.space


def test_defaults(tmp_path):
    spec = parse_spec({"name": "d", "space": {"lr": {"type": "float", "low": 0.001, "high": 0.01}}})
    assert spec.sampler == {"name": "tpe"} and spec.pruner == {"name": "median"}
    assert (spec.param_cap, spec.n_trials, spec.timeout, spec.epochs, spec.keep_checkpoints) == \
        (11_500_000, None, None, None, 3)
    assert spec.base_config().epochs == 10 and spec.source is None


def test_signature_follows_the_spec_as_written(tmp_path, monkeypatch):
    monkeypatch.setenv("FACESEARCH_DATA", "/mnt/a")
    first = load_spec(write(tmp_path, EXAMPLE))
    assert first.data["train"] == "/mnt/a/train1"
    monkeypatch.setenv("FACESEARCH_DATA", "/other/machine")
    assert load_spec(write(tmp_path, EXAMPLE)).space_signature() == first.space_signature()
    for changed in (EXAMPLE.replace("high: 200", "high: 250"), EXAMPLE.replace("width: 0.25", "width: 0.5"),
                    EXAMPLE.replace("/val\n", "/val2\n")):
        assert load_spec(write(tmp_path, changed)).space_signature() != first.space_signature()
    # what does not change the space leaves the signature alone
    assert load_spec(write(tmp_path, EXAMPLE.replace("n_trials: 20", "n_trials: 40"))).space_signature() == \
        first.space_signature()


def with_(raw: dict, *path_value) -> dict:
    """A deep copy of ``raw`` with ``("a.b.c", value)`` pairs set (value None deletes)."""
    raw = copy.deepcopy(raw)
    for dotted, value in path_value:
        *parents, key = dotted.split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value
    return raw


ERRORS = [
    # (changes to the valid spec, substrings of the one-line message)
    ((("samplr", {"name": "tpe"}),), ["unknown key 'samplr' (did you mean 'sampler'?)"]),
    ((("sampler.n_startup", 3),), ["sampler: unknown key 'n_startup' (did you mean 'n_startup_trials'?)"]),
    ((("pruner.n_warmup", 3),), ["pruner: unknown key 'n_warmup' (did you mean 'n_warmup_steps'?)"]),
    ((("space.lr.lo", 0.1),), ["space.lr: unknown key 'lo' (did you mean 'low'?)"]),
    ((("budget.n_trals", 3),), ["budget: unknown key 'n_trals' (did you mean 'n_trials'?)"]),
    ((("data.trian", "x"),), ["data: unknown key 'trian' (did you mean 'train'?)"]),
    ((("space.lrr", {"type": "float", "low": 0.1, "high": 1}),), ["space: unknown TrainConfig field 'lrr'",
                                                                   "did you mean 'lr'"]),
    ((("fixed.epoch", 3),), ["fixed: unknown TrainConfig field 'epoch' (did you mean 'epochs'?)"]),
    ((("fixed.train_path", "x"),), ["fixed: 'train_path': data paths come only via data:"]),
    ((("budget.n_trials", "ten"),), ["budget.n_trials: expected an integer, got a string 'ten'"]),
    ((("budget.n_trials", True),), ["budget.n_trials: expected an integer, got a boolean"]),
    ((("space.lr.log", "yes"),), ["space.lr.log: expected true or false"]),
    ((("fixed.epochs", "three"),), ["fixed.epochs: TrainConfig field 'epochs' expects int, got 'three'"]),
    ((("space.lr", [1, 2]),), ["space.lr: expected a mapping, got a list"]),
    ((("name", "my study"),), ["name: 'my study': use letters"]),
    ((("name", None),), ["name: required"]),
    ((("space.lr.type", "flaot"),), ["space.lr.type: unknown type 'flaot' (did you mean 'float'?)"]),
    ((("space.lr.type", None),), ["space.lr.type: required"]),
    ((("space.lr.choices", [1]),), ["space.lr.choices: not a key of type: float"]),
    ((("space.batch_size.low", 300),), ["space.batch_size.low: low 300 > high 200"]),
    ((("space.lr.low", 0.0),), ["space.lr.low: must be > 0 when log: true"]),
    ((("space.lr.step", 0.001),), ["space.lr.step: cannot be combined with log: true"]),
    ((("space.batch_size.step", 0),), ["space.batch_size.step: must be > 0"]),
    ((("space.batch_size.step", 40),), ["space.batch_size.high: high - low (200 - 50) must be a multiple of step 40"]),
    ((("space.batch_size.low", 50.5),), ["space.batch_size.low: expected an integer, got a number 50.5"]),
    ((("space.batch_size.type", "float"),), ["space.batch_size.type: batch_size holds int values; use type: int"]),
    ((("space.loss", {"type": "float", "low": 0, "high": 1}),), ["space.loss.type: loss holds str values; "
                                                                  "use type: categorical"]),
    ((("space.loss.choices", []),), ["space.loss.choices: needs a non-empty list"]),
    ((("space.loss.choices", "softmax"),), ["space.loss.choices: needs a non-empty list"]),
    ((("space.scale.choices", [30, [64]]),), ["space.scale.choices[1]: expected a single value, got a list"]),
    ((("space.scale.choices", [30, 30]),), ["space.scale.choices[1]: 30 is listed twice"]),
    ((("space.batch_size.choices", None), ("space.batch_size", {"type": "categorical", "choices": [64, "big"]})),
     ["space.batch_size.choices[1]: TrainConfig field 'batch_size' expects int, got 'big'"]),
    ((("space.margin.when", {"los": "arcface"}),), ["space.margin.when.los: 'los' is neither a space param nor a "
                                                     "fixed field (did you mean 'loss'?)"]),
    ((("space.margin.when", {"loss": "arcfase"}),), ["space.margin.when.loss: 'arcfase' is never a value of loss"]),
    ((("space.scale.when", {"margin": 0.3}), ("space.margin.when", {"scale": 30})),
     ["space.margin.when: dependency cycle margin -> scale -> margin"]),
    ((("space.scale.when", {"scale": 30}),), ["space.scale.when: dependency cycle scale -> scale"]),
    ((("fixed.model", "resnet19"),), ["fixed.model: unknown model 'resnet19' (did you mean 'resnet18'?); known: ",
                                      "mobilenet_v2", "tiny_vit_11m"]),
    ((("space.loss.choices", ["softmax", "arcfase"]),), ["space.loss.choices[1]: unknown loss 'arcfase' (did you "
                                                         "mean 'arcface'?); known: ", "cosface", "triplet_hard"]),
    ((("fixed.optimizer", "adamm"),), ["fixed.optimizer: unknown optimizer 'adamm'", "adamw", "radam", "sgd"]),
    ((("space.scheduler", {"type": "categorical", "choices": ["cosine", "sgdrr"]}),),
     ["space.scheduler.choices[1]: unknown scheduler 'sgdrr' (did you mean 'sgdr'?)", "step"]),
    ((("fixed.augment", "conservative+flipp"),), ["fixed.augment: unknown augmentation 'flipp' (did you mean "
                                                  "'flip'?)", "aggressive", "rotate"]),
    ((("fixed.lr", 0.1),), ["space.lr: also in fixed; a field is either fixed or searched"]),
    ((("constraint.param_cap", "11.5Q"),), ["constraint.param_cap: bad count '11.5Q'"]),
    ((("constraint.param_cap", "1.5"),), ["constraint.param_cap: bad count '1.5'"]),
    ((("budget.timeout", "2 fortnights"),), ["budget.timeout: bad duration '2 fortnights'"]),
    ((("budget.epochs", 5),), ["budget.epochs: 5 conflicts with fixed.epochs 3"]),
    ((("keep_checkpoints", -1),), ["keep_checkpoints: must be >= 0"]),
    ((("enqueue", [{"lrr": 0.001}]),), ["enqueue[0]: unknown key 'lrr' (did you mean 'lr'?); enqueue keys must be "
                                        "space params (lr, batch_size, loss, margin, scale, hard_rank)"]),
    ((("enqueue", [{"epochs": 3}]),), ["enqueue[0]: unknown key 'epochs'", "must be space params"]),
    ((("enqueue", [{"lr": 0.5}]),), ["enqueue[0].lr: 0.5 is outside the space (float in [0.0001, 0.01] log)"]),
    ((("enqueue", [{"batch_size": 75}]),), ["enqueue[0].batch_size: 75 is outside the space"]),
    ((("enqueue", [{"loss": "softmax", "margin": 0.3}]),),
     ["enqueue[0].margin: unused in this point: margin exists only when loss in ['arcface', 'cosface', "
      "'triplet_hard']"]),
    ((("enqueue", {"lr": 0.001}),), ["enqueue: expected a list, got a mapping"]),
    ((("sampler.name", "tpee"),), ["sampler.name: unknown sampler 'tpee' (did you mean 'tpe'?); known: tpe, random"]),
    ((("sampler.name", "grid"), ("sampler.n_startup_trials", None)),
     ["space.lr: the grid sampler needs a step or categorical choices for a float param"]),
    ((("sampler.seed", 0.5),), ["sampler.seed: expected an integer"]),
    ((("pruner.name", "medain"),), ["pruner.name: unknown pruner 'medain' (did you mean 'median'?)"]),
    ((("pruner.n_startup_trials", -1),), ["pruner: "]),
    ((("from", {"study": "baseline", "params": ["width"]}),), ["from.params[0]: 'width' is also in fixed"]),
    ((("from", {"study": "baseline", "params": ["lrr"]}),), ["from.params[0]: unknown TrainConfig field 'lrr'"]),
    ((("from", {"studdy": "baseline"}),), ["from: unknown key 'studdy' (did you mean 'study'?)"]),
]


@pytest.mark.parametrize("changes,expected", ERRORS, ids=[e[1][0].split(":")[0] + f"-{i}" for i, e in
                                                          enumerate(ERRORS)])
def test_every_validation_error_is_one_line_naming_file_and_field(tmp_path, changes, expected):
    message = error_of(tmp_path, with_(base(), *changes))
    for part in expected:
        assert part in message, message


def test_yaml_errors_name_the_line(tmp_path):
    assert "s.yaml: YAML syntax error at line 4: expected the node content" in \
        error_of(tmp_path, "name: x\nspace:\n  lr: {type: float, low: 1, high: [\n")
    twice = "name: x\nspace:\n  lr: {type: float, low: 1, high: 2}\n  lr: {type: float, low: 2, high: 3}\n"
    assert "s.yaml: YAML syntax error at line 4: duplicate key 'lr'" in error_of(tmp_path, twice)
    assert error_of(tmp_path, "- just\n- a list\n").endswith("s.yaml: expected a mapping, got a list")
    with pytest.raises(SpecError, match="nope.yaml: study spec not found"):
        load_spec(tmp_path / "nope.yaml")


def test_environment_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("FACESEARCH_DATA", "/data/course")
    monkeypatch.setenv("EMPTY", "")
    monkeypatch.delenv("PRETRAINED", raising=False)
    raw = with_(base(), ("data.train", "${FACESEARCH_DATA}/train2"), ("data.val", "${EMPTY:-/fallback}/val"),
                ("fixed.initial_model", "${PRETRAINED:-}"))
    spec = parse_spec(raw)
    assert spec.data["train"] == "/data/course/train2" and spec.data["val"] == "/fallback/val"
    assert spec.fixed["initial_model"] == ""
    monkeypatch.delenv("FACESEARCH_DATA")
    message = error_of(tmp_path, with_(base(), ("data.train", "${FACESEARCH_DATA}/train1")))
    assert "data.train: environment variable FACESEARCH_DATA is not set" in message
    message = error_of(tmp_path, with_(base(), ("fixed.initial_model", "${PRETRAINED}")))
    assert "fixed.initial_model: environment variable PRETRAINED is not set" in message


@pytest.mark.parametrize("text,count", [(11_500_000, 11_500_000), ("11.5M", 11_500_000), ("11500000", 11_500_000),
                                        ("800k", 800_000), (1.15e7, 11_500_000), ("11_500_000", 11_500_000),
                                        ("2G", 2_000_000_000), ("1.2e6", 1_200_000)])
def test_parse_count(text, count):
    assert parse_count(text) == count


@pytest.mark.parametrize("text", ["", "M", "11.5Q", "-3", "0", "1.5", True, "1.2345678k"])
def test_parse_count_refuses(text):
    with pytest.raises(SpecError, match="bad count"):
        parse_count(text)


@pytest.mark.parametrize("text,seconds", [(90, 90.0), ("90", 90.0), ("2h", 7200.0), ("30m", 1800.0),
                                          ("1h30m", 5400.0), ("1.5d", 129600.0), ("45s", 45.0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2x", "h", "0", "-5", "1h 2y"])
def test_parse_duration_refuses(text):
    with pytest.raises(SpecError, match="bad duration"):
        parse_duration(text)


# ------------------------------------------------------------------ samplers and pruners
def first_points(spec: StudySpec, seed_offset: int, n: int = 3) -> list[dict]:
    study = optuna.create_study(sampler=build_sampler(spec, seed_offset))
    points = []
    for _ in range(n):
        trial = study.ask()
        points.append(suggest(trial, spec.space, spec.fixed))
        study.tell(trial, 1.0)
    return points


@pytest.mark.parametrize("name", ["tpe", "random"])
def test_seed_offset_changes_the_first_suggestions(name):
    spec = parse_spec(with_(base(), ("sampler", {"name": name, "seed": 7})))
    assert first_points(spec, 0) == first_points(spec, 0)
    assert first_points(spec, 0) != first_points(spec, 1)


def test_sampler_options_reach_optuna():
    sampler = build_sampler(parse_spec(with_(base(), ("sampler", {"name": "tpe", "seed": 1, "n_startup_trials": 4,
                                                                  "multivariate": True}))))
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._n_startup_trials == 4
    assert isinstance(build_sampler(parse_spec(with_(base(), ("sampler", {"name": "gp"})))),
                      optuna.samplers.GPSampler)


def test_grid_sampler_builds_the_full_grid():
    raw = with_(base(), ("sampler", {"name": "grid", "seed": 0}), ("enqueue", None),
                ("space", {"loss": {"type": "categorical", "choices": ["softmax", "arcface"]},
                           "batch_size": {"type": "int", "low": 50, "high": 150, "step": 50},
                           "margin": {"type": "float", "low": 0.2, "high": 0.4, "step": 0.1},
                           "n_out": {"type": "int", "low": 127, "high": 128}}))
    spec = parse_spec(raw)
    study = optuna.create_study(sampler=build_sampler(spec))
    study.optimize(lambda t: float(len(suggest(t, spec.space, spec.fixed))), n_trials=100)
    seen = {tuple(sorted(t.params.items())) for t in study.trials}
    assert len(study.trials) == len(seen) == 2 * 3 * 3 * 2     # the grid stops the study when exhausted
    assert {t.params["margin"] for t in study.trials} == {0.2, 0.3, 0.4}
    assert {t.params["n_out"] for t in study.trials} == {127, 128}


def test_pruners():
    assert isinstance(build_pruner(parse_spec(base())), optuna.pruners.MedianPruner)
    hyperband = parse_spec(with_(base(), ("pruner", {"name": "hyperband", "min_resource": 1, "max_resource": 3})))
    assert isinstance(build_pruner(hyperband), optuna.pruners.HyperbandPruner)
    assert isinstance(build_pruner(parse_spec(with_(base(), ("pruner", {"name": "none"})))), optuna.pruners.NopPruner)
    percentile = parse_spec(with_(base(), ("pruner", {"name": "percentile", "percentile": 60.0, "n_warmup_steps": 1})))
    assert isinstance(build_pruner(percentile), optuna.pruners.PercentilePruner)


# ------------------------------------------------------------------ from: an earlier phase
def finished_study(storage, name: str, values: list[tuple[dict, float]], inherited: dict | None = None) -> None:
    study = optuna.create_study(study_name=name, storage=storage)
    if inherited is not None:
        study.set_user_attr(SPEC, json.dumps({"name": name, "inherited": inherited}))
    dists = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
             "optimizer": optuna.distributions.CategoricalDistribution(["adam", "sgd"]),
             "momentum": optuna.distributions.FloatDistribution(0.8, 0.95),
             "model": optuna.distributions.CategoricalDistribution(["resnet18", "mobilenet_v2"])}
    for params, value in values:
        study.add_trial(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params},
                                                  value=value))


def from_spec(tmp_path: Path, from_: object, **space) -> StudySpec:
    raw = {"name": "next", "from": from_, "fixed": {"resolution": 48}, "space": space}
    if not space:
        raw["space"] = {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                        "weight_decay": {"type": "float", "low": 0.0, "high": 0.01}}
        raw["enqueue"] = [{"lr": 0.001, "weight_decay": 0.0}, {"lr": 0.002}]
    return load_spec(write(tmp_path, yaml.safe_dump(raw), "next.yaml"))


def test_from_fixes_the_best_trials_params(tmp_path):
    storage = optuna.storages.InMemoryStorage()
    finished_study(storage, "baseline", [({"lr": 0.01, "optimizer": "sgd", "momentum": 0.9}, 20.0),
                                         ({"lr": 0.003, "optimizer": "adam"}, 12.5),
                                         ({"lr": 0.0001, "optimizer": "sgd", "momentum": 0.85}, 30.0)])
    spec = from_spec(tmp_path, {"study": "baseline", "params": ["lr", "optimizer", "momentum"]})
    out = apply_from(spec, storage)
    # momentum was inactive in the best trial (adam): it stays unset, the rest is fixed and leaves the space
    assert out.inherited == {"lr": 0.003, "optimizer": "adam"}
    assert out.fixed == {"lr": 0.003, "optimizer": "adam", "resolution": 48}
    assert list(out.space) == ["weight_decay"] and out.enqueue == [{"weight_decay": 0.0}]
    assert out.to_config({"weight_decay": 0.001}).lr == 0.003
    assert out.space_signature() == spec.space_signature()
    assert json.loads(out.to_json())["inherited"] == {"lr": 0.003, "optimizer": "adam"}

    # `from: NAME`: every param of the best trial plus what that study inherited itself; this spec's own space wins
    finished_study(storage, "architectures", [({"model": "mobilenet_v2", "lr": 0.005}, 9.0)],
                   inherited={"optimizer": "adam", "weight_decay": 0.001})
    chained = apply_from(from_spec(tmp_path, "architectures"), storage)
    assert chained.inherited == {"optimizer": "adam", "model": "mobilenet_v2"}
    assert list(chained.space) == ["lr", "weight_decay"]


def test_from_errors(tmp_path):
    storage = optuna.storages.InMemoryStorage()
    finished_study(storage, "baseline", [({"lr": 0.003, "optimizer": "adam"}, 12.5)])
    pruned = optuna.create_study(study_name="started", storage=storage)
    pruned.add_trial(optuna.trial.create_trial(params={}, distributions={}, state=optuna.trial.TrialState.PRUNED))
    with pytest.raises(SpecError) as e:
        apply_from(from_spec(tmp_path, "basline"), storage)
    assert str(e.value) == (f"{tmp_path / 'next.yaml'}: from.study: no study named 'basline' in this storage "
                            "(studies: baseline, started); run that phase first")
    with pytest.raises(SpecError, match=r"next.yaml: from.study: study 'started' has no complete trial yet"):
        apply_from(from_spec(tmp_path, "started"), storage)
    with pytest.raises(SpecError, match=r"from.params\[0\]: 'scale' is not a param of study 'baseline' "
                                        r"\(its params: lr, optimizer\)"):
        apply_from(from_spec(tmp_path, {"study": "baseline", "params": ["scale"]}), storage)


def test_when_may_name_what_from_will_fix(tmp_path):
    storage = optuna.storages.InMemoryStorage()
    finished_study(storage, "baseline", [({"lr": 0.003, "optimizer": "sgd", "momentum": 0.9}, 12.5)])
    spec = from_spec(tmp_path, {"study": "baseline", "params": ["optimizer"]},
                     momentum={"type": "float", "low": 0.8, "high": 0.99, "when": {"optimizer": "sgd"}})
    out = apply_from(spec, storage)
    assert out.fixed["optimizer"] == "sgd"
    trial = optuna.create_study().ask()
    assert set(suggest(trial, out.space, out.fixed)) == {"momentum"}


@pytest.mark.parametrize("from_", ["baseline", {"study": "baseline", "params": ["optimizer", "lr"]},
                                   {"study": "baseline", "params": ["model"]}])
def test_planner_and_runner_inherit_the_same_params(tmp_path, from_):
    """``plan`` prices what the workers will run: its ``from:`` carries the params ``apply_from`` fixes."""
    from search.cost.plan import chained

    write(tmp_path, yaml.safe_dump({"name": "baseline", "fixed": {"resolution": 32}, "space": {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
        "model": {"type": "categorical", "choices": ["resnet18", "mobilenet_v2"]}}}), "baseline.yaml")
    later = write(tmp_path, yaml.safe_dump({"name": "next", "from": from_, "fixed": {"resolution": 48},
                                            "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2}}}),
                  "next.yaml")
    storage = optuna.storages.InMemoryStorage()
    finished_study(storage, "baseline", [({"lr": 0.003, "optimizer": "adam", "model": "resnet18"}, 12.5)])
    (_, _), (spec, planned) = chained([later])   # the earlier phase is read from beside the later one
    assert set(planned) == set(apply_from(spec, storage).inherited)
