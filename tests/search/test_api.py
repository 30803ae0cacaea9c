"""The Python API: the README's notebook example runs as written (read from README.md), the exports are
lazy, and the docstring examples that need no study hold."""
from __future__ import annotations

import doctest
import re
import subprocess
import sys
from pathlib import Path

import search
import search.api

README = Path(__file__).resolve().parents[2] / "README.md"


def notebook_example() -> str:
    section = README.read_text().split("## In a notebook", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, re.S)
    return code


def test_the_readme_notebook_example_runs(tmp_path, monkeypatch):
    from facenet.data.synth import synthesize

    # the quickstart study's data, small: its batches take 32 identities of 2 images at 32 px
    synthesize(tmp_path / "data", identities=80, images_per_identity=4, size=32, seed=0, val_pairs=120,
               test_pairs=40)
    monkeypatch.setenv("FACESEARCH_DATA", str(tmp_path / "data"))
    for name in ("FACESEARCH_STORAGE", "FACESEARCH_RUNS"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "notebook.py").write_text(notebook_example())
    out = subprocess.run([sys.executable, "notebook.py"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "val_eer_low" in out.stdout and "param_count" in out.stdout          # the DataFrame printed
    assert re.search(r"TrialState\.(COMPLETE|PRUNED) \d+", out.stdout)          # the own loop's trial
    assert (tmp_path / "runs" / "facesearch.journal").exists()
    study = search.load_study("quickstart", str(tmp_path / "runs" / "facesearch.journal"))
    assert len(study.trials) == 2 and all(t.state.is_finished() for t in study.trials)
    frame = search.trials_frame("quickstart", str(tmp_path / "runs" / "facesearch.journal"))
    assert list(frame["number"]) == [0, 1] and set(frame["state"]) <= {"COMPLETE", "PRUNED"}
    best = search.best_trials("quickstart", str(tmp_path / "runs" / "facesearch.journal"))
    assert best and best[0]["rank"] == 1 and best[0]["verdict"] == "best"
    assert best[0]["value"] == min(t.value for t in study.trials if t.value is not None)


def test_import_search_is_cheap_and_every_export_resolves():
    out = subprocess.run([sys.executable, "-c", "import sys, search; print('torch' in sys.modules, "
                          "'optuna' in sys.modules)"], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr
    for name in search.__all__:
        assert getattr(search, name).__doc__, name


def test_docstring_examples_hold():
    failures, tried = doctest.testmod(search.api, optionflags=doctest.ELLIPSIS)[:2]
    assert tried >= 1 and failures == 0
