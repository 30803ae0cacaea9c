"""Workers and the supervisor, with real training on tiny synthetic faces: two workers share
the default storage, a SIGKILLed worker's trial is retried from its checkpoint (journal and
PostgreSQL), Ctrl-C leaves nothing running, and a later run cleans up after dead processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from search.spec import load_spec
from search.storage import open_storage
from search.record import WORKER
from search.run.recovery import recover_dead_trials
from search.run.study import prepare_study
from search.run.supervisor import Supervisor


def write_spec(path: Path, data: Path, name: str, n_trials: int, epochs: int = 3, **extra) -> Path:
    spec = {
        "name": name,
        "data": {"train": str(data / "train1"), "val": str(data / "val")},
        "fixed": {"resolution": 32, "model": "resnet_w", "n_out": 32, "batch_size": 8, "n_per_class": 2,
                  "workers": 0, "augment": "none", "max_val_pairs": 80, "device": "cpu"},
        "space": {"width": {"type": "categorical", "choices": [0.125, 0.25]},
                  "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "budget": {"n_trials": n_trials, "epochs": epochs},
        **extra,
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def trials_of(url: str, name: str):
    return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials(deepcopy=False)


def test_two_workers_share_the_default_storage(synth_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec_path = write_spec(tmp_path / "s.yaml", synth_data, "shared", n_trials=4, epochs=1)
    out = subprocess.run([sys.executable, "-m", "search.cli", "study", "run", str(spec_path), "--workers", "2"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr + out.stdout
    trials = trials_of("runs/facesearch.journal", "shared")          # the embedded default storage
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
    assert len({t.user_attrs[WORKER] for t in trials}) == 2, "both workers ran trials"
    assert "done in" in out.stdout


def _kill_mid_trial(url: str, spec_path: Path, name: str, runs: Path, monkeypatch) -> dict:
    monkeypatch.setenv("FACESEARCH_RUNS", str(runs))
    spec = load_spec(spec_path)
    study = prepare_study(spec, open_storage(url))
    log: list[str] = []
    sup = Supervisor(spec, spec_path, url, workers=2, gpus=None, n_trials=None, timeout=None, log=log.append)
    killed: dict = {}

    def tick():
        if killed:
            return
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.intermediate_values and max(t.intermediate_values) < spec.epochs:   # mid-trial: after epoch 1
                pid = int(t.user_attrs[WORKER].rpartition(":")[2])
                os.kill(pid, signal.SIGKILL)
                killed.update(trial=t.number, pid=pid, epoch=max(t.intermediate_values))
                return

    start = time.time()
    assert sup.run(study, on_tick=tick, tick=0.2) == 0
    assert killed, "no trial was caught mid-training"
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == spec.n_trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    dead = trials[killed["trial"]]
    assert dead.state == TrialState.FAIL
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed["trial"]]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == dead.params
    assert "resumed" in retry[0].user_attrs, "the retry started over instead of resuming its checkpoint"
    assert sorted(retry[0].intermediate_values) == list(range(1, spec.epochs + 1))
    assert any("SIGKILL" in line for line in log), log
    return {"seconds": time.time() - start, "log": log, **killed}


def test_sigkilled_worker_is_replaced_and_its_trial_resumes_journal(synth_data, tmp_path, monkeypatch):
    spec_path = write_spec(tmp_path / "s.yaml", synth_data, "killed", n_trials=3, epochs=4)
    r = _kill_mid_trial(str(tmp_path / "s.journal"), spec_path, "killed", tmp_path / "runs", monkeypatch)
    print(f"journal: killed trial {r['trial']} after epoch {r['epoch']}; {r['seconds']:.1f}s", *r["log"], sep="\n")


def test_sigkilled_worker_is_replaced_and_its_trial_resumes_postgres(synth_data, tmp_path, monkeypatch,
                                                                       postgres_url):
    spec_path = write_spec(tmp_path / "s.yaml", synth_data, "killed-pg", n_trials=3, epochs=4)
    r = _kill_mid_trial(postgres_url, spec_path, "killed-pg", tmp_path / "runs", monkeypatch)
    print(f"postgres: killed trial {r['trial']} after epoch {r['epoch']}; {r['seconds']:.1f}s", *r["log"], sep="\n")


def test_ctrl_c_stops_cleanly_and_the_next_run_resumes(synth_data, tmp_path):
    spec_path = write_spec(tmp_path / "s.yaml", synth_data, "stopped", n_trials=2, epochs=4)
    url = str(tmp_path / "s.journal")
    env = dict(os.environ, FACESEARCH_RUNS=str(tmp_path / "runs"))
    cmd = [sys.executable, "-m", "search.cli", "study", "run", str(spec_path), "--workers", "2", "--storage", url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 300
    while time.time() < deadline:   # wait until a trial has finished an epoch
        time.sleep(0.1)   # an epoch takes a fraction of a second: look often, or both trials end unseen
        try:
            if any(t.intermediate_values for t in trials_of(url, "stopped") if t.state == TrialState.RUNNING):
                break
        except KeyError:
            continue
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "Resume with: facesearch study run" in out
    trials = trials_of(url, "stopped")
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped and all("interrupted by SIGTERM" in t.user_attrs["fail_reason"] for t in stopped)
    assert all(t.user_attrs["fail_kind"] == "interrupted" for t in stopped)   # the kind is its own field

    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = trials_of(url, "stopped")
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    retries = [t for t in trials if "retry_of" in t.user_attrs]
    # a stopped trial that had finished an epoch has a checkpoint, and its retry resumes it
    with_checkpoint = [t for t in retries if trials[t.user_attrs["retry_of"]].intermediate_values]
    assert with_checkpoint and all("resumed" in t.user_attrs for t in with_checkpoint)


def test_a_later_worker_cleans_up_trials_of_dead_processes(synth_data, tmp_path):
    spec_path = write_spec(tmp_path / "s.yaml", synth_data, "orphan", n_trials=1, epochs=1)
    url = str(tmp_path / "s.journal")
    study = prepare_study(load_spec(spec_path), open_storage(url))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = study.ask({"width": optuna.distributions.CategoricalDistribution([0.125, 0.25]),
                       "lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)})
    import socket

    trial.set_user_attr(WORKER, f"{socket.gethostname()}:{dead.pid}")
    assert recover_dead_trials(study, log=lambda m: None) == [trial.number]
    trials = study.get_trials(deepcopy=False)
    assert trials[trial.number].state == TrialState.FAIL
    assert trials[-1].state == TrialState.WAITING and trials[-1].user_attrs["retry_of"] == trial.number


def test_only_the_best_k_trials_keep_their_checkpoints(synth_data, tmp_path, monkeypatch):
    from search.run.worker import run_worker

    monkeypatch.setenv("FACESEARCH_RUNS", str(tmp_path / "runs"))
    spec_path = write_spec(tmp_path / "s.yaml", synth_data, "bounded", n_trials=4, epochs=1, keep_checkpoints=2)
    url = str(tmp_path / "s.journal")
    assert run_worker(load_spec(spec_path), url, log=lambda m: None) == 4
    trials = trials_of(url, "bounded")
    best_two = {t.number for t in sorted(trials, key=lambda t: t.value)[:2]}
    (folder,) = (tmp_path / "runs").glob("bounded-*")   # the study's own, keyed by its stamp
    for t in trials:
        kept = sorted(p.name for p in (folder / f"trial-{t.number:04d}").glob("*.pt"))
        assert kept == (["best.pt", "last.pt"] if t.number in best_two else []), (t.number, kept)


def test_heartbeat_retries_a_vanished_workers_trial_on_postgres(synth_data, tmp_path, postgres_url):
    """Two standalone workers (as on two machines, no supervisor); one is SIGKILLed mid-trial.
    Its trial's heartbeat stops, the survivor fails it after the grace period, and its retry
    resumes the checkpoint."""
    name = f"heartbeat-{int(time.time())}"
    spec_path = write_spec(tmp_path / "s.yaml", synth_data, name, n_trials=3, epochs=4)
    env = dict(os.environ, FACESEARCH_RUNS=str(tmp_path / "runs"), FACESEARCH_HEARTBEAT="1:4",
               OMP_NUM_THREADS="1")
    workers = [subprocess.Popen([sys.executable, "-m", "search.cli", "worker", str(spec_path), "--storage",
                                 postgres_url, "--worker-id", str(i)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for i in range(2)]
    killed = None
    deadline = time.time() + 300
    while killed is None and time.time() < deadline:
        time.sleep(0.3)
        try:
            running = [t for t in trials_of(postgres_url, name) if t.state == TrialState.RUNNING]
        except KeyError:
            continue
        for t in running:
            if t.intermediate_values and max(t.intermediate_values) < 4:
                pid = int(t.user_attrs[WORKER].rpartition(":")[2])
                victim = next(w for w in workers if w.pid == pid)
                victim.kill()
                victim.wait()   # reaped: as gone as a process on another machine
                killed = t.number
                break
    assert killed is not None, "no trial was caught mid-training"
    survivor = next(w for w in workers if w is not victim)
    out, _ = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, out
    trials = trials_of(postgres_url, name)
    assert trials[killed].state == TrialState.FAIL
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and "resumed" in retry[0].user_attrs
    assert retry[0].system_attrs["failed_trial"] == killed, "not retried by Optuna's heartbeat callback"
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 3
    assert not [t for t in trials if t.state == TrialState.RUNNING]
