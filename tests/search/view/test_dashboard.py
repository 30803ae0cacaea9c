"""The real optuna-dashboard, started by our command line, serves a facesearch study over HTTP."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from search.run.study import prepare_study
from search.spec import parse_spec
from search.view.dashboard import LAUNCH, dashboard_command, free_port
from search.storage import open_storage

CLI = [sys.executable, "-P", "-m", "search.cli"]
DISTS = {"loss": CategoricalDistribution(["arcface", "softmax"]), "lr": FloatDistribution(1e-4, 1e-1, log=True)}
TRIALS = [(TrialState.COMPLETE, 12.5, "arcface", 1e-3), (TrialState.COMPLETE, 9.25, "softmax", 3e-3),
          (TrialState.PRUNED, None, "softmax", 5e-2)]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def _wait_for(base: str, process: subprocess.Popen, log) -> dict:
    """GET /api/studies once the server answers: bounded retries, about 30 s at most."""
    for _ in range(120):
        if process.poll() is not None:
            pytest.fail(f"optuna-dashboard exited with {process.returncode}:\n{log.read_text()}")
        try:
            return _get(f"{base}/api/studies")
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.25)
    pytest.fail(f"optuna-dashboard did not answer within 30 s:\n{log.read_text()}")


@pytest.fixture(params=["journal", "postgresql"])
def storage_url(request, tmp_path) -> str:
    return str(tmp_path / "s.journal") if request.param == "journal" else request.getfixturevalue("postgres_url")


def test_dashboard_serves_study(storage_url, tmp_path):
    name = f"phase1-{uuid.uuid4().hex[:6]}"   # the PostgreSQL server is shared by the session
    spec = parse_spec({"name": name, "description": "dashboard test",
                       "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}})
    study = prepare_study(spec, open_storage(storage_url))
    for state, value, loss, lr in TRIALS:
        study.add_trial(create_trial(state=state, value=value, params={"loss": loss, "lr": lr}, distributions=DISTS,
                                     intermediate_values={1: 30.0, 2: value or 28.0},
                                     user_attrs={"param_count": 1_000_000, "device": "cpu"}))

    port, log = free_port(), tmp_path / "dashboard.log"
    command = dashboard_command(storage_url, "127.0.0.1", port, tmp_path / "artifacts")
    assert command[command.index("--port") + 1] == str(port)
    (tmp_path / "artifacts").mkdir()
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        summaries = {s["study_name"]: s for s in _wait_for(base, process, log)["study_summaries"]}
        assert summaries[name]["directions"] == ["minimize"]
        detail = _get(f"{base}/api/studies/{summaries[name]['study_id']}")
        assert detail["name"] == name
        assert detail["objective_names"] == ["val EER %"], "the dashboard names the objective"
        assert [t["state"] for t in detail["trials"]] == ["Complete", "Complete", "Pruned"]
        assert [t.get("values") for t in detail["trials"]] == [[12.5], [9.25], None]
        assert [t["number"] for t in detail["best_trials"]] == [1]
        assert {p["name"] for p in detail["trials"][0]["params"]} == {"loss", "lr"}
        assert [v["value"] for v in detail["trials"][2]["intermediate_values"]] == [30.0, 28.0]
        assert _get(f"{base}/api/meta")["artifact_is_available"], "--artifact-dir reached the dashboard"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.parametrize("to", ["group", "parent"])
def test_ctrl_c_stops_dashboard_quietly(to, tmp_path):
    """Ctrl-C in a terminal signals the whole process group; a supervisor may signal serve_dashboard alone."""
    journal = str(tmp_path / "s.journal")
    optuna.create_study(study_name="quiet", storage=open_storage(journal))
    port, log = free_port(), tmp_path / "serve.log"
    serve = f"import sys, search.view.dashboard as d; sys.exit(d.serve_dashboard({journal!r}, port={port}))"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-c", serve], stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        studies = _wait_for(f"http://127.0.0.1:{port}", process, log)["study_summaries"]
        assert [s["study_name"] for s in studies] == ["quiet"]
        if to == "group":
            os.killpg(process.pid, signal.SIGINT)
        else:
            os.kill(process.pid, signal.SIGINT)
        assert process.wait(timeout=20) == 130, log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert "Traceback" not in log.read_text()
    with pytest.raises(urllib.error.URLError):
        _get(f"http://127.0.0.1:{port}/api/studies")


def test_command_line_per_storage(tmp_path):
    journal = dashboard_command(f"journal:{tmp_path}/s.journal", "0.0.0.0", 9000, None)
    assert journal[:4] == [sys.executable, "-c", LAUNCH, str(os.getpid())]   # its parent: it dies with it
    assert journal[4:] == [f"{tmp_path}/s.journal", "--storage-class", "JournalFileStorage",
                           "--host", "0.0.0.0", "--port", "9000"]
    assert dashboard_command("postgresql://u:p@h/db", "127.0.0.1", 1, None)[4] == "postgresql+psycopg://u:p@h/db"
    assert dashboard_command("sqlite:///x.db", "127.0.0.1", 1, tmp_path)[4:] == [
        "sqlite:///x.db", "--host", "127.0.0.1", "--port", "1", "--artifact-dir", str(tmp_path)]


# ---------------------------------------------------------------- the dashboard's child
def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2)
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_the_dashboard_child_stops_with_facesearch_dashboard(tmp_path, sig):
    journal = str(tmp_path / "s.journal")
    optuna.create_study(study_name="shown", storage=open_storage(journal))
    port = free_port()
    proc = subprocess.Popen([*CLI, "dashboard", "--storage", journal, "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not answers(port):
            assert proc.poll() is None and time.time() < deadline, "the dashboard answers within 120 s"
            time.sleep(0.3)
        (child,) = children(proc.pid)
        os.kill(proc.pid, sig)                                  # the command alone, as kill or systemd does
        code = proc.wait(timeout=60)
        deadline = time.time() + 30
        while not gone(child) and time.time() < deadline:
            time.sleep(0.2)
        assert gone(child), f"optuna-dashboard (pid {child}) outlived facesearch dashboard"
        assert not answers(port)
        assert code in (128 + sig, 130), code
        assert "Traceback" not in proc.stdout.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
