"""A run's cache settings reach everything that opens images: ``facesearch calibrate`` (its probes) and
``facesearch score`` build only the caches the config asks for, never a raw cache beside a JPEG one."""
from __future__ import annotations

from pathlib import Path

import yaml

from facenet import fit
from tests.search.cli.test_cli_errors import cli


def formats_in(folder: Path) -> set[str]:
    """The formats of the complete cache entries in ``folder`` (``<entry>.<format>.json`` metadata files)."""
    return {p.name.split(".")[-2] for p in folder.glob("*.json")}


def test_calibrate_builds_only_the_jpeg_cache_its_spec_asks_for(synth_data, tmp_path):
    cache = tmp_path / "cache"
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "jpeg-only", "data": {"train": str(synth_data / "train1"), "val": str(synth_data / "val")},
        "fixed": {"resolution": 32, "model": "resnet_w", "width": 0.125, "n_out": 32, "batch_size": 8,
                  "n_per_class": 2, "workers": 0, "augment": "none", "max_val_pairs": 40, "device": "cpu",
                  "cache_dir": str(cache), "cache_format": "jpeg", "cache_budget_gb": 50},
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "budget": {"n_trials": 2}}))
    r = cli("calibrate", str(spec), "--storage", str(tmp_path / "s.journal"), "--device", "cpu",
            "--steps", "2", "--warmup", "1", "--eval-images", "32", "--min-seconds", "0.1")
    assert r.returncode == 0, r.stderr
    assert formats_in(cache) == {"jpeg"}, sorted(p.name for p in cache.iterdir())
    assert len(list(cache.glob("*.jpeg.json"))) == 2   # the training folder and the val list
    assert not list(cache.glob("*.raw.*"))


def test_score_caches_as_the_models_config_says(tiny_config, tmp_path, monkeypatch):
    """A budget far below one raw cache: ``auto`` must take jpeg for the score too (the default budget, half
    the free disk, would take raw)."""
    tiny = 1e-6   # GB
    run = fit(tiny_config.replace(epochs=1, cache_budget_gb=tiny, cache_dir=str(tmp_path / "train-cache")),
              log=lambda m: None)
    scoring = tmp_path / "score-cache"
    monkeypatch.setenv("FACESEARCH_CACHE", str(scoring))   # the run's folder may be another machine's
    out = tmp_path / "scores.txt"
    r = cli("score", str(Path(run.run_dir) / "best.pt"), "--pairs", str(Path(tiny_config.val_path) / "val_pairs.csv"),
            "--out", str(out), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert out.read_text().count("\n") == 200   # every pair of the synthetic val list scored
    assert formats_in(scoring) == {"jpeg"} and not list(scoring.glob("*.raw.*"))
    assert formats_in(tmp_path / "train-cache") == {"jpeg"}
