"""Tracking against the real backends on a short study: an MLflow sqlite store read back with
``mlflow.search_runs`` (parent and nested runs, per-epoch metrics with steps, artifacts), W&B offline run
folders read back from their ``.wandb`` files, TensorBoard event files read with tensorboard's event reader;
a tracking server nobody answers costs one warning line and the study completes."""
from __future__ import annotations

import socket
import struct
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from search.finish.retrain import retrain
from search.run.worker import run_worker
from search.spec import SpecError, parse_spec
from search.storage import open_storage
from search.track import open_tracking
from search.track.registry import TrackingError, merge_targets, target_flags

pytest.importorskip("mlflow")   # the test extra installs all three; without them this file cannot run at all


def spec_raw(data: Path, name: str, tracking: dict | None = None, n_trials: int = 3, epochs: int = 2) -> dict:
    raw = {"name": name, "data": {"train": str(data / "train1"), "val": str(data / "val")},
           "fixed": {"resolution": 32, "n_out": 32, "batch_size": 8, "n_per_class": 2, "workers": 0,
                     "augment": "none", "device": "cpu"},
           "space": {"model": {"type": "categorical", "choices": ["resnet_w", "resnet34"]},
                     "width": {"type": "categorical", "choices": [0.125], "when": {"model": "resnet_w"}},
                     "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
           "sampler": {"name": "random", "seed": 0}, "pruner": {"name": "median", "n_startup_trials": 1},
           "budget": {"n_trials": n_trials, "epochs": epochs},
           # trial 0 is over the cap (pruned before training), trial 1 trains
           "enqueue": [{"model": "resnet34", "lr": 1e-3}, {"model": "resnet_w", "width": 0.125, "lr": 3e-3}]}
    if tracking:
        raw["tracking"] = tracking
    return raw


# ---------------------------------------------------------------- W&B's transaction log, read from the file
def wandb_records(path: Path):
    """The records of a ``run-*.wandb`` file: W&B's header, then LevelDB-log blocks of protobuf records."""
    from wandb.proto import wandb_internal_pb2 as pb

    block, data = 32768, path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (kind == 0 and length == 0):   # the block's zero padding
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk    # FULL/FIRST start a record, MIDDLE/LAST continue it
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def wandb_run(folder: Path) -> dict:
    import json

    run = {"history": [], "summary": {}}
    for r in wandb_records(next(folder.glob("run-*.wandb"))):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run |= {"group": r.run.run_group, "name": r.run.display_name, "project": r.run.project,
                    "job_type": r.run.job_type}
        elif kind == "history":
            run["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            run["summary"] |= {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.summary.update}
        elif kind == "exit":
            run["exit_code"] = r.exit.exit_code
    return run


def test_a_study_and_its_retrain_reach_mlflow_wandb_and_tensorboard(synth_data, tmp_path, monkeypatch):
    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("FACESEARCH_RUNS", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = {"mlflow": uri, "wandb": "facesearch-test", "tensorboard": str(tmp_path / "tb")}
    spec = parse_spec(spec_raw(synth_data, "tracked", tracking))
    url = str(tmp_path / "study.journal")
    lines: list[str] = []
    assert run_worker(spec, url, device="cpu", log=lines.append) == 3
    assert not [m for m in lines if "warning: tracking" in m], lines
    study = optuna.load_study(study_name="tracked", storage=open_storage(url))
    trials = study.get_trials(deepcopy=False)
    trained = [t for t in trials if t.user_attrs.get("history")]
    assert trained and trials[0].user_attrs["pruned_by"] == "cap"

    with open_tracking({"mlflow": uri}, tmp_path, lines.append) as track:   # the retrain's model as artifacts
        record = retrain(study, tmp_path, epochs=1, device="cpu", log=lines.append, tracking=track)
    assert not [m for m in lines if "warning: tracking" in m], lines

    # ---- MLflow: one parent run, one nested run per trial and the retrain
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["facesearch"])
    parent = runs[runs["tags.facesearch.kind"] == "study"]
    assert len(parent) == 1 and parent["tags.facesearch.study"].iloc[0] == "tracked"
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]]
    by_name = {r["tags.mlflow.runName"]: r for _, r in children.iterrows()}
    assert set(by_name) == {f"trial-{t.number:04d}" for t in trials} | {f"retrain-{record['trial']:04d}"}
    client = mlflow.tracking.MlflowClient(uri)
    capped = by_name["trial-0000"]
    assert capped["status"] == "KILLED" and capped["tags.state"] == "PRUNED" and capped["tags.pruned_by"] == "cap"
    assert capped["metrics.param_count"] == trials[0].user_attrs["param_count"]
    for t in trained:
        row = by_name[f"trial-{t.number:04d}"]
        history = t.user_attrs["history"]
        assert row["tags.state"] == t.state.name
        assert row["params.lr"] == str(t.params["lr"])
        for key, attr in (("val_eer", "val_eer"), ("train_loss", "loss"), ("lr", "lr")):
            logged = client.get_metric_history(row["run_id"], key)
            assert [(m.step, m.value) for m in sorted(logged, key=lambda m: m.step)] == pytest.approx(
                [(h["epoch"], h[attr]) for h in history])
        assert [m.step for m in client.get_metric_history(row["run_id"], "images_per_s")] == [
            h["epoch"] for h in history]
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert row["metrics.best_val_eer"] == pytest.approx(t.value)
            low, high = t.user_attrs["val_eer_ci"]
            assert row["metrics.best_val_eer_low"] == pytest.approx(low)
            assert row["metrics.best_val_eer_high"] == pytest.approx(high)
        assert "config.json" in [a.path for a in client.list_artifacts(row["run_id"])]
    again = by_name[f"retrain-{record['trial']:04d}"]
    assert again["tags.facesearch.kind"] == "retrain" and again["status"] == "FINISHED"
    assert again["metrics.best_val_eer"] == pytest.approx(record["val_eer"])
    files = {a.path for a in client.list_artifacts(again["run_id"])}
    assert {"best.pt", "retrain.json", "val_scores.txt", "roc.png", "roc_det.html"} <= files

    # ---- W&B: an offline run folder per trial, grouped by study
    folders = sorted(tmp_path.glob("tracked-*/wandb/offline-run-*"))   # in the study's run folder
    assert len(folders) == len(trials)
    wb = {r["name"]: r for r in map(wandb_run, folders)}
    assert set(wb) == {f"tracked/trial-{t.number:04d}" for t in trials}
    for t in trials:
        r = wb[f"tracked/trial-{t.number:04d}"]
        assert r["group"] == "tracked" and r["project"] == "facesearch-test" and r["exit_code"] == 0
        assert r["summary"]["state"] == t.state.name
        assert r["summary"]["param_count"] == t.user_attrs["param_count"]
        history = t.user_attrs.get("history", [])
        assert [(h["_step"], h["val_eer"]) for h in r["history"]] == pytest.approx(
            [(h["epoch"], h["val_eer"]) for h in history])
        if t.user_attrs.get("pruned_by"):
            assert r["summary"]["pruned_by"] == t.user_attrs["pruned_by"]

    # ---- TensorBoard: event files per trial: scalars per epoch, the study's HParams experiment (every space
    # param, conditional ones too), the trial's session (its params) and its metrics
    from tensorboard.plugins.hparams import metadata

    for t in trials:
        events = EventAccumulator(str(tmp_path / "tb" / "tracked" / f"trial-{t.number:04d}"))
        events.Reload()
        tags = events.PluginTagToContent("hparams")
        assert set(tags) == {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}
        experiment = metadata.parse_experiment_plugin_data(tags["_hparams_/experiment"])
        assert {h.name for h in experiment.hparam_infos} == {"model", "width", "lr", "state"}
        session = metadata.parse_session_start_info_plugin_data(tags["_hparams_/session_start_info"])
        assert set(session.hparams) == set(t.params) | {"state"}
        history = t.user_attrs.get("history", [])
        if history:
            assert [(e.step, e.value) for e in events.Scalars("val/eer")] == pytest.approx(
                [(h["epoch"], h["val_eer"]) for h in history], rel=1e-5)
        [best] = events.Scalars("hparam/best_val_eer")
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert best.value == pytest.approx(t.value, rel=1e-5)


def _closed_port() -> int:
    with socket.socket() as s:   # bound, then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_tracking_server_nobody_answers_costs_one_warning_and_the_study_completes(synth_data, tmp_path):
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(yaml.safe_dump(spec_raw(synth_data, "unanswered", n_trials=2, epochs=1)))
    uri = f"http://127.0.0.1:{_closed_port()}"
    out = subprocess.run([sys.executable, "-m", "search.cli", "study", "run", str(spec_path), "--storage",
                          str(tmp_path / "s.journal"), "--mlflow", uri], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    warnings = [line for line in (out.stdout + out.stderr).splitlines() if "warning: tracking" in line]
    assert len(warnings) == 1 and uri in warnings[0], out.stdout + out.stderr
    assert "done in" in out.stdout
    logs = "".join(p.read_text() for p in tmp_path.rglob("worker-*.log"))
    assert "tracking" not in logs and "mlflow" not in logs.lower()   # the workers were not sent there
    trials = optuna.load_study(study_name="unanswered", storage=open_storage(str(tmp_path / "s.journal"))).trials
    assert len(trials) == 2 and all(t.state.is_finished() for t in trials)


def test_train_logs_to_tensorboard_in_its_run_folder_and_to_an_mlflow_file_store(tiny_config, tmp_path,
                                                                                 monkeypatch):
    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config.to_dict()))
    store = (tmp_path / "mlruns").as_uri()
    cmd = [sys.executable, "-m", "search.cli", "train", "--config", str(config), "--set", "epochs=2",
           "--tensorboard", "true", "--mlflow", store]
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=600)   # MLflow 3 refuses a folder: said
    assert refused.returncode == 2 and "use sqlite:///mlflow.db" in refused.stderr, refused.stderr   # before training
    assert len(refused.stderr.strip().splitlines()) == 1 and not Path(tiny_config.run_dir).exists()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "warning" not in out.stdout + out.stderr
    events = EventAccumulator(str(Path(tiny_config.run_dir) / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    mlflow.set_tracking_uri(store)
    [run] = mlflow.search_runs(experiment_names=["facesearch"], output_format="list")
    assert run.data.tags["facesearch.kind"] == "train" and run.info.status == "FINISHED"
    assert [m.step for m in mlflow.tracking.MlflowClient(store).get_metric_history(run.info.run_id, "val_eer")] \
        == [1, 2]


def test_tracking_targets_from_the_spec_and_the_flags(synth_data):
    spec = parse_spec(spec_raw(synth_data, "t", {"mlflow": "file:./mlruns", "tensorboard": True}))
    assert spec.tracking == {"mlflow": "file:./mlruns", "tensorboard": ""}
    assert merge_targets(spec.tracking, {"mlflow": "off", "wandb": "p", "tensorboard": None}) == {
        "tensorboard": "", "wandb": "p"}
    assert target_flags({"wandb": "p"}) == ["--mlflow", "off", "--wandb", "p", "--tensorboard", "off"]
    with pytest.raises(SpecError, match="tracking.neptune: unknown tracking backend; use mlflow, wandb, tensorboard"):
        parse_spec(spec_raw(synth_data, "t", {"neptune": "x"}))
    with pytest.raises(SpecError, match="tracking.mlflow: expected a tracking URI"):
        parse_spec(spec_raw(synth_data, "t", {"mlflow": 3}))
    assert isinstance(TrackingError("x"), ValueError)
