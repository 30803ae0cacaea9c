"""One output convention: ``--format json`` of every read-only command parses (``--json`` is the same), CSV
reads back with a header, piped tables carry no box characters and fit 100 columns or keep a row per line;
help shows no value placeholder on flags, ``train --help`` lists every TrainConfig field, and every
FACESEARCH_* variable the code reads is documented in the README and in ``--help``."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path

import pytest
import yaml

from facenet.config import TrainConfig
from search.cli.help import ENV_VARS
from tests.search.cli.test_cli_errors import cli

ROOT = Path(__file__).resolve().parents[3]
BOX = set("│┃━─┏┓┗┛╭╮╰╯┡┩")


@pytest.fixture(scope="module")
def study(synth_data, tmp_path_factory) -> dict:
    """A two-trial study of one epoch each (real training), its spec file and a calibration file."""
    folder = tmp_path_factory.mktemp("formats")
    spec = {"name": "formats", "data": {"train": str(synth_data / "train1"), "val": str(synth_data / "val")},
            "fixed": {"resolution": 32, "model": "resnet_w", "width": 0.125, "n_out": 32, "batch_size": 8,
                      "n_per_class": 2, "workers": 0, "augment": "none", "device": "cpu"},
            "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
            "sampler": {"name": "random", "seed": 0}, "budget": {"n_trials": 2, "epochs": 1}}
    path = folder / "formats.yaml"
    path.write_text(yaml.safe_dump(spec))
    url = str(folder / "s.journal")
    ran = cli("worker", str(path), "--storage", url, "--device", "cpu")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return {"spec": str(path), "url": url, "data": str(synth_data), "calibration": str(folder / "cal.json")}


def commands(s: dict) -> dict[str, list[str]]:
    """Every read-only command (and retrain's summary, and calibrate's table) with its arguments."""
    return {
        "studies": ["studies", "--storage", s["url"]],
        "studies --builtin": ["studies", "--builtin"],
        "study status": ["study", "status", "formats", "--storage", s["url"]],
        "best": ["best", "formats", "--storage", s["url"]],
        "data check": ["data", "check", s["data"], "-r", "32", "--cache-dir", str(Path(s["url"]).parent / "c")],
        "params": ["params", "--n-out", "128"],
        "calibrate": ["calibrate", s["spec"], "--storage", s["url"], "--device", "cpu", "--keys", "shapes",
                      "--steps", "1", "--warmup", "0", "--eval-images", "16", "--min-seconds", "0",
                      "--out", s["calibration"]],
        "plan price": ["plan", "price", s["spec"], "--hours", "100", "--calibration", s["calibration"]],
        "retrain": ["retrain", "formats", "--storage", s["url"], "--epochs", "1", "--device", "cpu"],
    }


def test_format_json_of_every_read_only_command_parses(study):
    for name, args in commands(study).items():   # in this order: plan price reads calibrate's file
        out = cli(*args, "--format", "json")
        assert out.returncode == 0, (name, out.stdout, out.stderr)
        record = json.loads(out.stdout)
        assert record, name
        if name in ("best", "study status", "params"):
            assert json.loads(cli(*args, "--json").stdout) == record, name   # the short form says the same
    plan = json.loads(cli(*commands(study)["plan price"], "--format", "json").stdout)
    assert [p["phase"] for p in plan["phases"]] == ["formats"] and plan["fits"] is True
    best = json.loads(cli(*commands(study)["best"], "--format", "json").stdout)
    assert best["top"][0]["verdict"] == "best" and "val_eer_ci" in best["top"][0]


@pytest.mark.parametrize("name", ["studies", "study status", "best", "data check", "params"])
def test_csv_reads_back_and_piped_tables_are_plain(study, name):
    args = commands(study)[name]
    out = cli(*args, "--format", "csv")
    assert out.returncode == 0, out.stdout + out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert rows and all(None not in r for r in rows), out.stdout          # every row as wide as the header
    table = cli(*args)                                                      # piped (captured): plain text
    assert table.returncode == 0 and table.stdout.strip()
    assert not BOX & set(table.stdout), table.stdout
    lines = table.stdout.splitlines()
    assert all(len(line) <= 100 for line in lines) or len(lines) <= len(rows) + 8, table.stdout


def test_an_unknown_format_is_one_line_and_exit_2():
    out = cli("params", "--format", "xml")
    assert out.returncode == 2 and out.stderr.strip() == "error: --format xml: use one of table, json, csv"


def test_help_shows_no_placeholder_on_flags_and_train_lists_every_config_field():
    for args in (["--help"], ["best", "--help"], ["study", "run", "--help"], ["retrain", "--help"]):
        out = cli(*args)
        assert out.returncode == 0 and "--help" in out.stdout
        assert "<bool>" not in out.stdout, args
    text = " ".join(cli("train", "--help").stdout.split())
    for f in dataclasses.fields(TrainConfig):
        assert re.search(rf"\b{f.name}=", text), f.name


def test_every_environment_variable_is_documented():
    read = set()
    for path in [*ROOT.glob("search/**/*.py"), *ROOT.glob("facenet/**/*.py")]:
        read |= set(re.findall(r"FACESEARCH_[A-Z_]+", path.read_text()))
    # set by study run for its own workers, not by users (run/tether.py)
    read -= {"FACESEARCH_SUPERVISOR_PID", "FACESEARCH_WORKER_RESULT"}
    assert read <= set(ENV_VARS), read - set(ENV_VARS)
    readme = (ROOT / "README.md").read_text()
    root_help = " ".join(cli("--help").stdout.split())
    for name in ENV_VARS:
        assert f"`{name}`" in readme, name
        assert name in root_help, name
    study_help = cli("study", "run", "--help").stdout
    assert "FACESEARCH_HEARTBEAT" in study_help and "FACESEARCH_GPU_DECODE" in study_help
