"""A study that cannot run stops at once, with real processes on tiny synthetic faces: preflight before
anything is written, the circuit breaker, log lines without a terminal, workers immune to the working
folder and tied to their supervisor, impossible points pruned as infeasible, and ``train`` never mixing
runs."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from search.record import WORKER, TrialRecord
from search.storage import open_storage
from tests.search.cli.test_cli_errors import cli, one_line_error, train_args
from tests.search.run.test_workers import trials_of, write_spec as workers_spec

CLI = [sys.executable, "-P", "-m", "search.cli"]   # -P: these tests start commands in folders of their own


def write_spec(path: Path, data: Path, name: str, n_trials: int, epochs: int = 1, fixed: dict | None = None,
               drop: tuple[str, ...] = (), **extra) -> Path:
    """test_workers' tiny spec, with ``fixed`` changes and fields ``drop``ped from it."""
    workers_spec(path, data, name, n_trials, epochs, **extra)
    raw = yaml.safe_load(path.read_text())
    raw["fixed"] = {k: v for k, v in {**raw["fixed"], **(fixed or {})}.items() if k not in drop}
    path.write_text(yaml.safe_dump(raw))
    return path


def wait_for(condition, limit: float, what: str, step: float = 0.2):
    """Poll ``condition`` until it returns something true; fail after ``limit`` seconds (a generous bound)."""
    deadline = time.time() + limit
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"not within {limit:.0f}s: {what}")


def alive(pid: int) -> bool:
    """A process that runs (a zombie left for a parent that never reaps it has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def data(synth_data, tmp_path) -> Path:
    """A private copy of the synthetic set that a test may take away."""
    return Path(shutil.copytree(synth_data, tmp_path / "data", ignore=shutil.ignore_patterns(".facesearch-cache")))


# ------------------------------------------------------------------ 1. preflight
def test_missing_data_study_exits_2_at_once_and_leaves_the_storage_unchanged(tmp_path):
    journal = tmp_path / "s.journal"
    optuna.create_study(study_name="earlier", storage=open_storage(str(journal)))
    before = journal.read_bytes()
    spec = write_spec(tmp_path / "s.yaml", tmp_path / "no-data", "missing", n_trials=50)
    env = dict(os.environ, FACESEARCH_RUNS=str(tmp_path / "runs"))
    for command in (["study", "run", str(spec), "--workers", "2"], ["worker", str(spec)]):
        start = time.time()
        out = subprocess.run([*CLI, *command, "--storage", str(journal)], capture_output=True, text=True, env=env,
                             timeout=300)
        print(f"{' '.join(command[:2])}: exit {out.returncode} in {time.time() - start:.1f}s: {out.stderr.strip()}")
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.strip().splitlines() == [f"error: {tmp_path / 'no-data' / 'train1'}: training folder does "
                                                   f"not exist (expected one sub-folder per identity)"]
        assert journal.read_bytes() == before, "the storage changed"
        assert not (tmp_path / "runs").exists()
    fresh = tmp_path / "fresh.journal"
    one_line_error(cli("study", "run", str(spec), "--storage", str(fresh)), "training folder does not exist")
    assert not fresh.exists(), "a journal was created for a study that cannot run"


def test_preflight_device_folders_and_from(data, tmp_path, monkeypatch):
    import torch

    j = str(tmp_path / "j.journal")
    if not torch.cuda.is_available():
        cuda = write_spec(tmp_path / "cuda.yaml", data, "cuda", n_trials=1, fixed={"device": "cuda"})
        one_line_error(cli("study", "run", str(cuda), "--storage", j), "device 'cuda'", "no CUDA GPU is visible")
        spec = write_spec(tmp_path / "s.yaml", data, "dev", n_trials=1)
        one_line_error(cli("worker", str(spec), "--storage", j, "--device", "cuda:0"), "no CUDA GPU is visible")
    spec = write_spec(tmp_path / "s.yaml", data, "folders", n_trials=1)
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("FACESEARCH_RUNS", str(tmp_path / "a-file" / "runs"))
    one_line_error(cli("study", "run", str(spec), "--storage", j), "runs folder", "a-file is not a folder")
    monkeypatch.delenv("FACESEARCH_RUNS")
    one_line_error(cli("study", "run", str(spec), "--storage", str(tmp_path / "a-file" / "j")), "storage folder")
    spec = write_spec(tmp_path / "c.yaml", data, "cache", n_trials=1)
    monkeypatch.setenv("FACESEARCH_CACHE", str(tmp_path / "a-file" / "cache"))
    one_line_error(cli("study", "run", str(spec), "--storage", j), "cache folder", "FACESEARCH_CACHE")
    monkeypatch.delenv("FACESEARCH_CACHE")
    chained = write_spec(tmp_path / "f.yaml", data, "chained", n_trials=1, **{"from": {"study": "phase0"}})
    one_line_error(cli("study", "run", str(chained), "--storage", str(tmp_path / "none.journal")), "phase0",
                   "does not exist yet")
    assert not Path(j).exists() and not (tmp_path / "none.journal").exists()


def test_preflight_of_retrain_score_and_quickstart(data, tmp_path):
    import torch

    from facenet.config import TrainConfig

    j = str(tmp_path / "j.journal")
    study = optuna.create_study(study_name="done", storage=open_storage(j))
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-2)
    config = TrainConfig(train_path=str(tmp_path / "gone" / "train1"), val_path=str(data / "val"), resolution=32,
                         model="resnet_w", width=0.125, device="cpu")
    study.add_trial(optuna.trial.create_trial(value=20.0, params={"lr": 1e-3}, distributions={"lr": lr},
                                              user_attrs={"config": config.to_dict()}))
    before = Path(j).read_bytes()
    one_line_error(cli("retrain", "done", "--storage", j), "gone/train1", "training folder does not exist")
    assert Path(j).read_bytes() == before and not (tmp_path / "done").exists()
    (tmp_path / "a-file").write_text("")
    pairs = str(data / "val" / "val_pairs.csv")
    one_line_error(cli("score", str(tmp_path / "model.pt"), "--pairs", pairs, "--out", str(tmp_path / "a-file" / "s")),
                   "score file folder", "choose another --out")
    if not torch.cuda.is_available():
        one_line_error(cli("score", str(tmp_path / "model.pt"), "--pairs", pairs, "--out", str(tmp_path / "s"),
                           "--device", "cuda"), "no CUDA GPU is visible")
    one_line_error(cli("quickstart", "--out", str(tmp_path / "a-file" / "q")), "quickstart folder", "a-file")


# ------------------------------------------------------------------ 2. circuit breaker
def test_data_disappearing_after_the_first_trial_stops_the_study(data, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", data, "vanish", n_trials=30,
                      budget={"n_trials": 30, "epochs": 1, "max_failures": 3})
    url = str(tmp_path / "s.journal")
    log = tmp_path / "study.log"
    env = dict(os.environ, FACESEARCH_RUNS=str(tmp_path / "runs"), FACESEARCH_CACHE=str(tmp_path / "cache"))
    with log.open("w") as out:
        proc = subprocess.Popen([*CLI, "study", "run", str(spec), "--workers", "2", "--storage", url], env=env,
                                stdout=out, stderr=subprocess.PIPE, text=True)

    def one_complete():
        try:
            return any(t.state == TrialState.COMPLETE for t in trials_of(url, "vanish"))
        except KeyError:
            return False

    wait_for(one_complete, 300, "a first trial completes")
    shutil.move(data / "train1", tmp_path / "moved-away")
    _, err = proc.communicate(timeout=300)
    trials = trials_of(url, "vanish")
    failed = [t for t in trials if t.state == TrialState.FAIL]
    print(log.read_text(), err, *(f"trial {t.number}: {TrialRecord.of(t).reason}" for t in failed), sep="\n")
    assert proc.returncode == 2
    errors = [l for l in err.splitlines() if "error" in l.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: study 'vanish' stopped: ") \
        and errors[0].endswith("train1: training folder does not exist (expected one sub-folder per identity)"), err
    assert 1 <= len(failed) <= 3, "more FAIL trials than budget.max_failures"
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len(trials) < 30


def test_the_same_failure_three_times_or_max_failures_stops_a_worker(data, tmp_path):
    """A device that is not there (here without preflight) fails every trial alike, before any data is read."""
    import torch

    from search.run.breaker import CircuitBreaker, StudyStopped
    from search.run.objective import Objective
    from search.run.worker import optimize_until
    from search.spec import load_spec

    if torch.cuda.device_count() > 7:
        pytest.skip("cuda:7 exists here")
    spec = load_spec(write_spec(tmp_path / "s.yaml", data, "same", n_trials=20, epochs=1))
    for limit, message in ((10, "3 trials in a row failed with: device 'cuda:7'"),
                           (2, "2 failed trials reached budget.max_failures 2")):
        study = optuna.create_study()
        with pytest.raises(StudyStopped, match=re.escape(message)):
            optimize_until(study, Objective(spec, tmp_path / "runs", "cuda:7", log=lambda m: None), 20,
                           log=lambda m: None, breaker=CircuitBreaker(study, limit))
        assert sum(t.state == TrialState.FAIL for t in study.trials) == min(limit, 3)


# ------------------------------------------------------------------ 4 + 5. logs without a terminal, working folder
def test_study_run_in_a_folder_holding_search_py_logs_every_trial_to_a_file(data, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for shadow in ("search.py", "facenet.py", "optuna.py"):
        (work / shadow).write_text("raise SystemExit('the working folder shadowed a package')\n")
    spec = write_spec(tmp_path / "s.yaml", data, "logged", n_trials=3, epochs=1)
    url = str(tmp_path / "s.journal")
    log = tmp_path / "study.log"
    env = dict(os.environ, FACESEARCH_RUNS=str(tmp_path / "runs"))
    with log.open("w") as out:
        done = subprocess.run([*CLI, "study", "run", str(spec), "--storage", url], cwd=work, stdout=out,
                              stderr=subprocess.STDOUT, env=env, timeout=600)
    text = log.read_text()
    print(text)
    assert done.returncode == 0, text
    trials = trials_of(url, "logged")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3, "the workers did not run their trials"
    dated = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d "   # ISO date and time
    assert re.search(dated + r"worker 0 started \(pid \d+\)$", text, re.M)
    for t in trials:
        line = re.search(dated + rf"trial {t.number} complete: val EER {t.value:.2f}%; (.*); \d+s$", text, re.M)
        assert line, f"no line for trial {t.number}"
        assert set(line.group(1).split()) == {f"width={t.params['width']:.3g}", f"lr={t.params['lr']:.3g}"}
    assert re.search(dated + r"summary: complete 3; budget 3", text, re.M), "no closing summary"


# ------------------------------------------------------------------ 6 + 7. infeasible points, the rule that pruned
def test_an_impossible_point_is_warned_at_load_and_pruned_as_infeasible_without_data(data, tmp_path):
    from search.run.objective import Objective
    from search.run.preflight import preflight_study
    from search.run.worker import optimize_until
    from search.spec import load_spec

    space = {"loss": {"type": "categorical", "choices": ["softmax", "triplet_hard"]},
             "n_per_class": {"type": "int", "low": 1, "high": 2}}
    path = write_spec(tmp_path / "s.yaml", data, "impossible", n_trials=1, space=space, drop=("n_per_class",),
                      enqueue=[{"loss": "triplet_hard", "n_per_class": 1}])
    warnings: list[str] = []
    preflight_study(load_spec(path), str(tmp_path / "j.journal"), warn=warnings.append)
    assert len(warnings) == 1 and "loss=triplet_hard, n_per_class=1" in warnings[0] and "when:" in warnings[0]
    print(warnings[0])
    without_data = load_spec(write_spec(tmp_path / "m.yaml", tmp_path / "no-data", "impossible", n_trials=1,
                                        space=space, drop=("n_per_class",),
                                        enqueue=[{"loss": "triplet_hard", "n_per_class": 1}]))
    study = optuna.create_study()
    for point in without_data.enqueue:
        study.enqueue_trial(point)
    optimize_until(study, Objective(without_data, tmp_path / "runs", "cpu", log=lambda m: None), 1,
                   log=lambda m: None)
    t = study.trials[0]
    assert t.state == TrialState.PRUNED and TrialRecord.of(t).pruned_by == "infeasible"
    assert "needs n_per_class >= 2" in t.user_attrs["prune_reason"]
    assert t.constraints["runnable"] > 0 and not TrialRecord.of(t).trained
    assert not (tmp_path / "runs").exists(), "a run folder was made for a point that cannot run"


def test_fit_refuses_an_impossible_config_before_touching_anything(tiny_config):
    from facenet import fit
    from facenet.errors import ConfigError

    bad = tiny_config.replace(loss="triplet_hard", n_per_class=1, train_path="/no/such/data")
    with pytest.raises(ConfigError, match=r"loss 'triplet_hard' needs n_per_class >= 2 \(got 1\); set n_per_class=2"):
        fit(bad)
    assert not Path(bad.run_dir).exists()


def test_status_and_report_name_the_rule_that_pruned(tmp_path):
    from search.view.status import counts, state_of
    from search.view.trial_log import trial_line

    study = optuna.create_study()
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-2)
    rules = ["cap", "median", "percentile", "hyperband", "successive_halving", "threshold", "non-finite loss",
             "infeasible"]
    for rule in rules:
        study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, params={"lr": 1e-3},
                                                  distributions={"lr": lr},
                                                  user_attrs={"pruned_by": rule, "prune_reason": f"{rule} said so"}))
    assert [state_of(t) for t in study.trials] == [f"pruned ({r})" for r in rules]
    assert counts(study.trials) == {"complete": 0, **{f"pruned ({r})": 1 for r in rules}}
    assert trial_line(study.trials[3]).startswith("trial 3 pruned (hyperband): hyperband said so; lr=0.001")


# ------------------------------------------------------------------ 8. workers never outlive their supervisor
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGKILL], ids=["SIGTERM", "SIGUSR1", "SIGKILL"])
def test_workers_stop_when_study_run_is_ended(data, tmp_path, sig):
    spec = write_spec(tmp_path / "s.yaml", data, "ended", n_trials=20, epochs=20)
    url = str(tmp_path / "s.journal")
    env = dict(os.environ, FACESEARCH_RUNS=str(tmp_path / "runs"))
    log = tmp_path / "study.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*CLI, "study", "run", str(spec), "--workers", "2", "--storage", url], env=env,
                                stdout=out, stderr=subprocess.STDOUT)

    def both_training():
        try:
            running = [t for t in trials_of(url, "ended") if t.state == TrialState.RUNNING]
        except KeyError:
            return None
        pids = {int(t.user_attrs[WORKER].rpartition(":")[2]) for t in running if WORKER in t.user_attrs}
        return pids if len(pids) == 2 else None

    workers = wait_for(both_training, 300, "both workers run a trial")
    os.kill(proc.pid, sig)
    start = time.time()
    wait_for(lambda: not any(alive(p) for p in workers), 60, f"the workers exit after {sig.name}")
    gone = time.time() - start
    proc.wait(timeout=120)
    print(f"{sig.name}: workers gone {gone:.1f}s after the signal; study run exit {proc.returncode}")
    print(log.read_text())
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + sig)
    trials = trials_of(url, "ended")
    assert not [t for t in trials if t.state == TrialState.RUNNING], "a trial was left RUNNING"
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert len(stopped) == 2 and all(t.user_attrs["fail_reason"] == "interrupted by SIGTERM" for t in stopped)
    queued = [t for t in trials if t.state == TrialState.WAITING]   # each queued again, once
    assert sorted(t.user_attrs["retry_of"] for t in queued) == sorted(t.number for t in stopped)


# ------------------------------------------------------------------ 9. train never mixes runs
def test_train_never_mixes_runs(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    named = train_args(data, tmp_path)           # ends with --set run_dir=...
    assert named[-1].startswith("run_dir=")
    assert cli(*named).returncode == 0
    line = one_line_error(cli(*named, "--set", "lr=0.01"), f"run folder {tmp_path / 'run'} holds a run with another "
                                                           f"config (lr 0.001 -> 0.01)", "--resume")
    print(line)
    resumed = cli(*named, "--set", "lr=0.01", "--set", "epochs=2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {tmp_path / 'run'} after epoch 1" in resumed.stdout
    folders = []
    for lr in ("0.001", "0.002"):                 # no run_dir: each run its own new folder
        out = cli(*named[:-2], "--set", f"lr={lr}")
        assert out.returncode == 0, out.stderr
        folders.append(re.search(r"run folder (\S+)$", out.stdout.strip()).group(1))
    print(folders)
    assert folders[0] != folders[1]
    assert all(re.fullmatch(r"runs/train/\d{8}-\d{6}(-\d+)?", f) for f in folders), folders
