"""From the best trial to a submission: retrain (with train2 fine-tuning), export, load the
bundle without facesearch, score test pairs, report, and read the study back with Optuna's CLI."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from facenet.data.cache import CacheSpec, cache_size, load_images
from facenet.data.folders import PairList
from facenet.eval.evaluate import embed
from facenet.export import export_bundle, load_embedder
from search.finish.retrain import retrain
from search.record import RETRAIN, RETRAIN_FILE, RetrainRecord
from search.spec import load_spec
from search.storage import open_storage
from search.run.worker import run_worker
from tests.search.cli.test_cli_errors import cli
from tests.search.run.test_workers import write_spec


@pytest.fixture(scope="module")
def finished(synth_data, tmp_path_factory):
    """A 2-trial study, its best trial retrained for 2 epochs and fine-tuned 1 epoch on train2, and its bundle."""
    root = tmp_path_factory.mktemp("finish")
    spec_path = write_spec(root / "s.yaml", synth_data, "finish", n_trials=2, epochs=1)
    url = str(root / "s.journal")
    import os

    os.environ["FACESEARCH_RUNS"] = str(root / "runs")
    try:
        run_worker(load_spec(spec_path), url, log=lambda m: None)
    finally:
        del os.environ["FACESEARCH_RUNS"]
    study = optuna.load_study(study_name="finish", storage=open_storage(url))
    record = retrain(study, root / "runs", epochs=2, finetune_on="train2", finetune_epochs=1, device="cpu",
                     log=lambda m: None, artifacts=root / "artifacts")
    bundle = root / "bundle"
    card = export_bundle(record.run_dir, bundle, provenance={"study": "finish", "trial": record.trial})
    return {"root": root, "url": url, "study": study, "record": record, "bundle": bundle, "card": card,
            "data": synth_data}


def test_retrain_fine_tunes_and_is_recorded_on_the_study(finished):
    record, study = finished["record"], finished["study"]
    assert record.trial == min((t for t in study.trials if t.value is not None), key=lambda t: t.value).number
    assert record.finetuned_on.endswith("train2")
    run = Path(record.run_dir)
    assert run.name == "finetune" and (run.parent / "pretrain" / "best.pt").exists()
    config = json.loads((run / "config.json").read_text())
    assert config["initial_model"].endswith("pretrain/best.pt") and config["train_path"].endswith("train2")
    stored = optuna.load_study(study_name="finish", storage=open_storage(finished["url"])).user_attrs[RETRAIN]
    assert stored["best_pt"] == record.best_pt and len(stored["roc"]["scores"]) == len(stored["roc"]["labels"])
    assert RetrainRecord.from_dict(stored) == record   # the typed record survives the storage round trip
    beside = RetrainRecord.from_dict(json.loads((run / RETRAIN_FILE).read_text()))
    assert beside == dataclasses.replace(record, roc=None)


def test_retrain_attaches_card_scores_and_roc_as_optuna_artifacts(finished):
    from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta

    study = optuna.load_study(study_name="finish", storage=open_storage(finished["url"]))
    metas = {m.filename: m for m in get_all_artifact_meta(study)}
    assert set(metas) == {"retrain.json", "val_scores.txt", "roc_det.html"}
    store = FileSystemArtifactStore(str(finished["root"] / "artifacts"))
    got = finished["root"] / "downloaded.txt"
    download_artifact(artifact_store=store, artifact_id=metas["val_scores.txt"].artifact_id, file_path=str(got))
    lines = got.read_text().splitlines()
    assert len(lines) == len(finished["record"].roc["labels"]) and lines[0].count(",") == 3


def test_bundle_contents_and_model_card(finished):
    bundle, card = finished["bundle"], finished["card"]
    assert sorted(p.name for p in bundle.iterdir()) == ["MODEL_CARD.md", "config.json", "model.onnx", "model.ts"]
    text = (bundle / "MODEL_CARD.md").read_text()
    for fragment in ("resnet_w", f"{card['parameters']:,} of 11,500,000 (fits)", "val EER", "train2", "finish / "):
        assert fragment in text
    assert card["onnx_max_abs_diff"] <= 1e-4


LOAD_WITHOUT_FACESEARCH = """
import json, sys
import numpy as np, torch, onnxruntime as ort
bundle, images = sys.argv[1], np.load(sys.argv[2])
ts = torch.jit.load(bundle + "/model.ts")
ts_out = ts(torch.from_numpy(images)).detach().numpy()
onnx_out = ort.InferenceSession(bundle + "/model.onnx").run(None, {"images": images})[0]
assert not any(m.split(".")[0] in ("facenet", "search") for m in sys.modules), "facesearch was imported"
np.save(sys.argv[3], ts_out); np.save(sys.argv[4], onnx_out)
"""


def test_bundle_loads_without_facesearch_and_matches_training_code(finished, tmp_path):
    meta = json.loads((finished["bundle"] / "config.json").read_text())
    res = meta["resolution"]
    pairs = PairList.read(finished["data"] / "test", "test_pairs.csv")
    cached = load_images(pairs.root, pairs.images[:16], cache_size(res), CacheSpec(tmp_path / "cache")).array
    from facenet.data.transforms import ToFloat, center_crop, normalize_

    images = normalize_(ToFloat()(torch.from_numpy(np.array(center_crop(cached, res))))).numpy()
    np.save(tmp_path / "x.npy", images)
    out = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_FACESEARCH, str(finished["bundle"]),
                          str(tmp_path / "x.npy"), str(tmp_path / "ts.npy"), str(tmp_path / "onnx.npy")],
                         capture_output=True, text=True,
                         cwd=tmp_path)   # cwd away from the repo: nothing of facesearch on sys.path by accident
    assert out.returncode == 0, out.stderr
    model, _ = load_embedder(Path(finished["record"].best_pt), torch.device("cpu"))
    with torch.no_grad():
        reference = model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "ts.npy"), reference, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "onnx.npy"), reference, atol=1e-4)
    # and the training code's evaluation path (normalised embeddings) agrees with the bundle's
    emb = embed(model, cached, res, torch.device("cpu"))
    bundle_model, _ = load_embedder(finished["bundle"], torch.device("cpu"))
    np.testing.assert_allclose(embed(bundle_model, cached, res, torch.device("cpu")).numpy(), emb.numpy(), atol=1e-5)


def test_export_without_the_export_extra(finished, tmp_path, monkeypatch):
    """ONNX export names the extra to install in one line; a TorchScript-only bundle (what the quickstart
    writes on a core install) needs none and embeds as the full bundle does."""
    from facenet.errors import MissingExtra

    run = finished["record"].run_dir
    monkeypatch.setitem(sys.modules, "onnxscript", None)   # as if not installed: importing it fails
    with pytest.raises(MissingExtra) as e:
        export_bundle(run, tmp_path / "full")
    assert str(e.value) == ("ONNX export needs the export extra (onnxscript not installed): "
                            "pip install 'facesearch[export]'")
    assert list(tmp_path.iterdir()) == []
    card = export_bundle(run, tmp_path / "ts", onnx=False)
    assert sorted(p.name for p in (tmp_path / "ts").iterdir()) == ["MODEL_CARD.md", "config.json", "model.ts"]
    assert card["onnx_max_abs_diff"] is None
    assert "onnx" not in (tmp_path / "ts" / "MODEL_CARD.md").read_text().lower()
    res = card["resolution"]
    images = torch.randn(3, 3, res, res, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outputs = [load_embedder(b, torch.device("cpu"))[0](images)
                   for b in (tmp_path / "ts", finished["bundle"])]
    torch.testing.assert_close(outputs[0], outputs[1])


def test_score_cli_accepts_bundle_and_checkpoint(finished, tmp_path):
    pairs = finished["data"] / "test" / "test_pairs.csv"
    outputs = {}
    for name, model in (("bundle", finished["bundle"]), ("ckpt", finished["record"].best_pt)):
        out = cli("score", str(model), "--pairs", str(pairs), "--out", str(tmp_path / f"{name}.txt"), "--device",
                  "cpu")   # the command's main() in this process: torch is imported here already
        assert out.returncode == 0, out.stderr
        assert "EER" in out.stdout
        outputs[name] = (tmp_path / f"{name}.txt").read_text().splitlines()
    assert len(outputs["bundle"]) == len(pairs.read_text().splitlines())
    a = np.array([float(l.split(",")[0]) for l in outputs["bundle"]])
    b = np.array([float(l.split(",")[0]) for l in outputs["ckpt"]])
    np.testing.assert_allclose(a, b, atol=2e-6)
    assert [l.split(",", 1)[1] for l in outputs["bundle"]] == [l.split(",", 1)[1] for l in outputs["ckpt"]]


def test_report_of_a_real_study(finished, tmp_path):
    from search.view.report import write_report

    study = optuna.load_study(study_name="finish", storage=open_storage(finished["url"]))
    html = write_report(study, tmp_path / "report").read_text()
    assert "fig-roc" in html and "fig-det" in html
    assert len((tmp_path / "report" / "trials.csv").read_text().splitlines()) == 1 + len(study.trials)


def test_study_reads_back_through_optunas_own_cli_and_api(finished):
    out = subprocess.run(["optuna", "studies", "--storage", finished["url"], "-f", "json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    studies = {s["name"]: s for s in json.loads(out.stdout)}
    assert studies["finish"]["n_trials"] == 2
    out = subprocess.run(["optuna", "best-trial", "--study-name", "finish", "--storage", finished["url"], "-f", "json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    best = json.loads(out.stdout)
    assert best["number"] == finished["record"].trial
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(finished["url"]))
    api = optuna.load_study(study_name="finish", storage=journal)   # plain Optuna, no facesearch code
    assert api.best_trial.number == best["number"]


def test_a_retrain_that_repeats_the_trial_uses_its_checkpoints_and_one_that_does_not_trains(finished, tmp_path,
                                                                                             monkeypatch):
    """Near the end of this file: it replaces the study's retrain record (as the next test does)."""
    from facenet import checkpoint
    from search.record import TrialRecord

    monkeypatch.setenv("FACESEARCH_RUNS", str(tmp_path / "same"))
    done = cli("retrain", "finish", "--storage", finished["url"], "--reuse", "--device", "cpu")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "its checkpoints are used" in done.stdout and "\nepoch " not in done.stdout, done.stdout   # not trained
    study = optuna.load_study(study_name="finish", storage=open_storage(finished["url"]))
    same = RetrainRecord.from_dict(study.user_attrs[RETRAIN])
    trial = Path(TrialRecord.of(study.trials[same.trial]).config["run_dir"])
    ours, theirs = (checkpoint.model_state(checkpoint.load(Path(d) / "best.pt")) for d in (same.run_dir, trial))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert same.val_eer_ci[0] <= same.val_eer <= same.val_eer_ci[1] and same.epochs == 1

    lines: list[str] = []
    longer = retrain(study, tmp_path / "longer", epochs=2, device="cpu", log=lines.append, reuse=True)
    assert any(line.startswith("retraining trial") for line in lines), lines
    assert checkpoint.load(Path(longer.run_dir) / "last.pt")["epoch"] == 2 and longer.epochs == 2


def test_retrain_top_retrains_each_and_compares_them_paired(finished, tmp_path, monkeypatch):
    """Last in this file: it replaces the study's retrain record with the best of the two retrained."""
    from search.record import RETRAINS
    from tests.search.cli.test_cli_errors import cli

    monkeypatch.setenv("FACESEARCH_RUNS", str(tmp_path / "runs"))
    done = cli("retrain", "finish", "--storage", finished["url"], "--top", "2", "--epochs", "1",
               "--device", "cpu")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("retrained trial")]
    assert len(lines) == 2 and lines[0].endswith("; best retrained")
    assert re.search(r"val EER [\d.]+% \[[\d.]+, [\d.]+\].*; vs best retrained [+-][\d.]+ "
                     r"\[[+-][\d.]+, [+-][\d.]+\] points, (within noise|worse)$", lines[1])
    study = optuna.load_study(study_name="finish", storage=open_storage(finished["url"]))
    records = study.user_attrs[RETRAINS]
    assert sorted(records) == sorted(str(t.number) for t in study.trials)
    best = study.user_attrs[RETRAIN]
    assert best["val_eer"] == min(r["val_eer"] for r in records.values()) and "roc" in best
    other = next(r for r in records.values() if r["trial"] != best["trial"])
    gap = other["vs_best_retrained"]
    assert gap["method"] == "paired" and gap["low"] <= gap["difference"] <= gap["high"]
    assert gap["difference"] == pytest.approx(other["val_eer"] - best["val_eer"], abs=1e-9)
    for r in records.values():
        low, high = r["val_eer_ci"]
        assert low <= r["val_eer"] <= high and Path(r["val_scores"]).is_file()
        assert (Path(r["run_dir"]) / "roc.png").read_bytes().startswith(b"\x89PNG")
