"""A run folder belongs to one trial of one study, with real processes and real training: a study deleted and
created again under its name never resumes the old one's checkpoints, a checkpoint of another config fails
only its own trial (never loaded, the study goes on), ``study delete --runs`` removes the folder, and a
study name cannot be a path."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

from search.record import FAIL_REASON
from search.run.folders import STAMP
from search.run.study import prepare_study
from search.run.worker import run_worker
from search.spec import load_spec
from search.storage import open_storage
from tests.search.cli.test_cli_errors import cli, one_line_error
from tests.search.run.test_robust import write_spec as robust_spec
from tests.search.run.test_workers import write_spec

CLI = [sys.executable, "-P", "-m", "search.cli"]


def run(spec: Path, url: str, runs: Path, cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run([*CLI, "study", "run", str(spec), "--storage", url], capture_output=True, text=True,
                         timeout=600, env=dict(os.environ, FACESEARCH_RUNS=str(runs)), cwd=cwd)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def worker_logs(runs: Path, name: str) -> str:
    return "".join(p.read_text() for p in (runs / name).glob("worker-*.log"))


def test_a_study_made_again_under_its_name_never_resumes_the_old_ones_checkpoints(synth_data, tmp_path, monkeypatch):
    url, runs = str(tmp_path / "s.journal"), tmp_path / "runs"
    monkeypatch.setenv("FACESEARCH_RUNS", str(runs))   # for the commands run in this process too
    first = write_spec(tmp_path / "a.yaml", synth_data, "tiny", n_trials=1, epochs=1)
    # the old study's one trial, trained by a worker in this process (the new study below runs as a user runs it)
    assert run_worker(load_spec(first), url, log=lambda m: None) == 1
    (old,) = runs.glob("tiny-*")
    old_checkpoint = (old / "trial-0000" / "last.pt").read_bytes()

    deleted = cli("study", "delete", "tiny", "--storage", url, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert f"its run folder {old} is kept (a new study 'tiny' will not use it)" in deleted.stdout

    # another config under the same name; its trial 0 finds, in its own folder, a checkpoint of the old config
    second = robust_spec(tmp_path / "b.yaml", synth_data, "tiny", n_trials=2, epochs=1, fixed={"n_out": 16})
    study = prepare_study(load_spec(second), open_storage(url))
    new = runs / f"tiny-{study.user_attrs[STAMP]}"
    assert new != old, "a new study gets a folder of its own"
    shutil.copytree(old / "trial-0000", new / "trial-0000")   # as a shared runs folder or a copy could leave it
    run(second, url, runs, tmp_path)

    log = worker_logs(runs, "tiny")
    assert "resumed" not in log, "no trial resumed a checkpoint it did not write"
    trials = optuna.load_study(study_name="tiny", storage=open_storage(url)).get_trials(deepcopy=False)
    refused = [t for t in trials if t.state == TrialState.FAIL]
    assert len(refused) == 1 and refused[0].number == 0
    reason = refused[0].user_attrs[FAIL_REASON]
    print(f"trial 0 failed with: {reason}")
    assert "was trained with another config" in reason and "not loaded" in reason
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2, "the study went on to its budget"
    assert (new / "trial-0000" / "last.pt").read_bytes() == old_checkpoint, "the refused checkpoint is untouched"
    assert (old / "trial-0000" / "last.pt").read_bytes() == old_checkpoint

    removed = cli("study", "delete", "tiny", "--storage", url, "--yes", "--runs")
    assert removed.returncode == 0 and str(new) in removed.stdout, removed.stdout
    assert not new.exists() and old.exists(), "--runs removes this study's folder only"


def test_a_study_name_is_never_a_path(synth_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("..", ".", "../up", "a/b", ".hidden"):
        spec = write_spec(tmp_path / "s.yaml", synth_data, name, n_trials=1)
        one_line_error(cli("study", "run", str(spec), "--storage", "s.journal"), "a study name names a folder")
        one_line_error(cli("study", "init", name), "a study name names a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"], "nothing written"
