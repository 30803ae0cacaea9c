"""The process protocols as typed values: the ``host:pid`` worker tag (``WorkerId``), the failure kind stored
as its own field, and the error a supervised worker stops on handed back as a ``WorkerExit`` (never read
from its log)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from search.record import (BUDGET, FAIL_KIND, FAIL_REASON, INTERRUPTED, NOT_RUN, Estimate, TrialRecord,
                           WorkerId)
from search.run.breaker import StudyStopped
from search.run.supervisor import Supervisor
from search.run.tether import RESULT_ENV, WorkerExit
from search.spec import load_spec
from search.storage import open_storage
from search.trials import fail_trial


def test_worker_id_round_trips_and_knows_a_dead_process():
    me = WorkerId.me()
    assert WorkerId.parse(str(me)) == me and me.here and not me.gone
    assert WorkerId.parse("node-1.cluster:4242") == WorkerId("node-1.cluster", 4242)
    assert WorkerId.parse("") is None and WorkerId.parse("no-pid") is None and WorkerId.parse("host:x") is None
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert WorkerId(socket.gethostname(), int(done.stdout)).gone   # exited and reaped
    assert not WorkerId("another-host", int(done.stdout)).gone     # elsewhere nothing is known


def test_failure_kind_is_stored_not_read_from_the_reason():
    study = optuna.create_study()
    for kind, reason in ((INTERRUPTED, "stopped by SIGTERM"), (None, "interrupted-looking text of a real failure")):
        t = study.ask()
        fail_trial(study, study.trials[t.number], reason, kind)
    stopped, real = (TrialRecord.of(t) for t in study.trials)
    assert stopped.fail_kind == INTERRUPTED and not stopped.failure   # retried on resume, not counted
    assert real.fail_kind is None and real.failure                    # however its reason begins
    text_only = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={FAIL_REASON: f"{NOT_RUN} when ..."})
    assert TrialRecord.of(text_only).fail_kind is None   # the reason is for people; the kind is the field
    budget = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={FAIL_REASON: "out", FAIL_KIND: BUDGET})
    assert TrialRecord.of(budget).fail_kind == BUDGET and not TrialRecord.of(budget).failure


def test_estimate_is_typed_on_the_record():
    e = Estimate(epochs=3, images_per_epoch=100, val_images=40, setup_s=2.0, epoch_s=5.0, point="cpu")
    t = optuna.trial.create_trial(value=1.0, user_attrs={"estimate": e.to_dict()})
    assert TrialRecord.of(t).estimate == e and TrialRecord.of(t).estimate.seconds == 17.0
    assert TrialRecord.of(optuna.trial.create_trial(value=1.0)).estimate is None


def test_supervisor_learns_a_workers_user_error_from_its_exit_report(tmp_path, monkeypatch):
    """The worker stops on a user error after the supervisor started it (its data went away): the study
    stops with that one line, passed back through ``WorkerExit``; the worker's log is not read."""
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": "gone", "data": {"train": str(tmp_path / "nothing" / "train1"), "val": str(tmp_path / "nothing")},
        "fixed": {"device": "cpu", "workers": 0}, "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2}},
        "budget": {"n_trials": 1}}))
    monkeypatch.setenv("FACESEARCH_RUNS", str(tmp_path / "runs"))
    url = str(tmp_path / "s.journal")
    spec = load_spec(spec_path)
    study = optuna.create_study(study_name=spec.name, storage=open_storage(url))
    supervisor = Supervisor(spec, spec_path, url, 1, None, 1, None, log=lambda m: None)
    with pytest.raises(StudyStopped) as e:
        supervisor.run(study, tick=0.2)
    assert "training folder does not exist" in str(e.value) and "error:" not in str(e.value)
    (report,) = (tmp_path / "runs" / "gone").glob("worker-*.exit.json")
    ended = WorkerExit.read(report)
    assert ended.user_error and "training folder does not exist" in ended.error
    assert RESULT_ENV not in os.environ
