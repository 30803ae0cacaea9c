"""Inputs a hostile but realistic user gives, each one line and exit 2 before anything trains, with real files
and real processes: a val list of one label, duplicate pairs, a relative ``--pairs``, worker counts the
machine cannot hold, a bad ``FACESEARCH_HEARTBEAT`` and a symlink loop in the data."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from search.run.capacity import capacity
from search.spec import load_spec
from search.storage import open_storage
from tests.search.cli.test_cli_errors import cli, one_line_error, train_args
from tests.search.run.test_workers import write_spec

CLI = [sys.executable, "-P", "-m", "search.cli"]


@pytest.fixture
def data(synth_data, tmp_path) -> Path:
    return Path(shutil.copytree(synth_data, tmp_path / "data"))


# ---------------------------------------------------------------- pair lists
@pytest.mark.parametrize("label", ["0", "1"])
def test_a_val_list_of_one_label_is_refused_before_training(data, tmp_path, label):
    pairs = data / "val" / "val_pairs.csv"
    pairs.write_text("".join(f"{label},{line.split(',', 1)[1]}\n" for line in pairs.read_text().splitlines()))
    kind = "same-person" if label == "1" else "different-person"
    one_line_error(cli(*train_args(data, tmp_path)), str(pairs), f"are {kind} (label {label})", "needs both labels")
    assert not (tmp_path / "run").exists(), "nothing trained, nothing written"
    spec = write_spec(tmp_path / "s.yaml", data, "onelabel", n_trials=1)
    one_line_error(cli("study", "run", str(spec), "--storage", str(tmp_path / "s.journal")), "needs both labels")
    assert not (tmp_path / "s.journal").exists()
    check = cli("data", "check", str(data / "val"), "-r", "32")
    assert check.returncode == 2 and "needs both labels" in check.stderr, "data check: an error, not a warning"


def test_data_check_reports_duplicate_pairs(data):
    pairs = data / "val" / "val_pairs.csv"
    lines = pairs.read_text().splitlines()
    label, a, b = lines[3].split(",")
    pairs.write_text("\n".join([*lines, lines[3], f"{label},{b},{a}"]) + "\n")   # again, and the other way round
    check = cli("data", "check", str(data / "val"), "-r", "32")
    assert check.returncode == 0, check.stderr
    assert "2 pair(s) repeat an earlier pair" in " ".join(check.stdout.split()), check.stdout


def test_score_takes_a_relative_pairs_path_from_the_working_folder(data, tmp_path, monkeypatch):
    assert cli(*train_args(data, tmp_path)).returncode == 0
    monkeypatch.chdir(tmp_path)
    out = cli("score", "run", "--pairs", "data/test/test_pairs.csv", "--out", "scores.csv", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "scores.csv").read_text().splitlines()
    assert len(lines) == len((data / "test" / "test_pairs.csv").read_text().splitlines())
    print(out.stdout.strip())


# ---------------------------------------------------------------- workers
def test_worker_counts_are_bounded(data, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", data, "bounded", n_trials=1)
    most, why = capacity(load_spec(spec))
    for n in ("0", "-1"):
        one_line_error(cli("study", "run", str(spec), "--workers", n, "--storage", str(tmp_path / "s.journal")),
                       f"--workers {n}: must be at least 1")
    line = one_line_error(cli("study", "run", str(spec), "--workers", "1000", "--storage",
                              str(tmp_path / "s.journal")), f"this machine holds {most} ({why})", "--force-workers")
    print(line)
    assert not (tmp_path / "s.journal").exists(), "no study made, no worker started"


# ---------------------------------------------------------------- environment
def test_a_bad_heartbeat_variable_is_one_line_where_it_is_used(tmp_path, postgres_url):
    env = dict(os.environ, FACESEARCH_HEARTBEAT="abc")
    journal = str(tmp_path / "s.journal")
    optuna.create_study(study_name="here", storage=open_storage(journal))
    ok = subprocess.run([*CLI, "studies", "--storage", journal], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and "here" in ok.stdout, "a journal does not use it: nothing read at import"
    bad = subprocess.run([*CLI, "studies", "--storage", postgres_url], capture_output=True, text=True, env=env,
                         timeout=120)
    one_line_error(bad, "FACESEARCH_HEARTBEAT='abc'", "INTERVAL:GRACE")


# ---------------------------------------------------------------- file-system errors in the data
def test_a_symlink_loop_in_the_data_is_one_line_naming_it(data, tmp_path):
    loop = data / "train1" / "id00001" / "loop.jpg"
    loop.symlink_to(loop.name)
    one_line_error(cli(*train_args(data, tmp_path)), str(loop), "Too many levels of symbolic links")
    spec = write_spec(tmp_path / "s.yaml", data, "looped", n_trials=2)
    one_line_error(cli("study", "run", str(spec), "--storage", str(tmp_path / "s.journal")), str(loop))
