"""A worker stopped by a signal on a database storage (as a Slurm time limit or scancel stops it): its trial is
queued again once, and the next worker resumes it from its checkpoint (the epoch counter continues)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState

from search.record import WORKER

from tests.search.run.test_workers import trials_of, write_spec


def wait_for(what: str, check, limit: float = 300, every: float = 0.3):
    """``check()`` until it returns something truthy; fails naming ``what`` after ``limit`` seconds."""
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            found = check()
        except KeyError:   # the study is not created yet
            found = None
        if found:
            return found
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}")


def test_a_signalled_worker_s_trial_resumes_from_its_checkpoint_on_postgres(synth_data, tmp_path, postgres_url):
    sig = signal.SIGTERM   # the walltime warnings (SIGUSR1/2) take the same path: tests/search/run/test_slurm.py
    name = f"interrupted-{sig.name}-{int(time.time())}"
    epochs = 4
    spec_path = write_spec(tmp_path / "s.yaml", synth_data, name, n_trials=1, epochs=epochs)
    env = dict(os.environ, FACESEARCH_RUNS=str(tmp_path / "runs"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "search.cli", "worker", str(spec_path), "--storage", postgres_url]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def mid_trial():
        running = [t for t in trials_of(postgres_url, name) if t.state == TrialState.RUNNING]
        return next((t for t in running if t.intermediate_values and max(t.intermediate_values) < epochs), None)

    victim = wait_for("a trial past its first epoch", mid_trial)
    assert int(victim.user_attrs[WORKER].rpartition(":")[2]) == first.pid
    first.send_signal(sig)
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 130, out
    trials = trials_of(postgres_url, name)
    stopped = trials[victim.number]
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["fail_reason"] == f"interrupted by {sig.name}"
    retries = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].state == TrialState.WAITING, "queued again once"
    assert f"trial {victim.number}: interrupted by {sig.name}; queued again" in out
    done_before = max(stopped.intermediate_values)

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    trials = trials_of(postgres_url, name)
    retry = trials[retries[0].number]
    assert retry.state == TrialState.COMPLETE and "resumed" in retry.user_attrs
    assert sorted(retry.intermediate_values) == list(range(1, epochs + 1))
    # the new worker trains only the epochs left: its first epoch line is the one after the checkpoint
    trained = [int(m) for m in re.findall(rf"trial {retry.number} epoch (\d+)/{epochs}", second.stdout)]
    assert trained and trained[0] > 1 and trained[0] >= done_before, second.stdout
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 1
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_a_trial_whose_worker_keeps_dying_is_not_retried_forever(synth_data, tmp_path):
    """Each dead worker's trial is queued again, up to MAX_RETRY times; interruptions never count."""
    import socket

    import optuna

    from search.run.recovery import MAX_RETRY, interrupt, recover_dead_trials
    from search.run.study import prepare_study
    from search.spec import load_spec
    from search.storage import open_storage

    spec_path = write_spec(tmp_path / "s.yaml", synth_data, "crashing", n_trials=1, epochs=1)
    study = prepare_study(load_spec(spec_path), open_storage(str(tmp_path / "s.journal")))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    space = {"width": optuna.distributions.CategoricalDistribution([0.125, 0.25]),
             "lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)}
    lines: list[str] = []
    interrupted = study.ask(space)   # an interruption first: it queues a retry and is no failure
    interrupt(study, study.get_trials(deepcopy=False)[interrupted.number], "SIGTERM", lines.append)
    for attempt in range(MAX_RETRY + 1):
        trial = study.ask()   # the retry queued last (same params, same origin)
        trial.set_user_attr(WORKER, f"{socket.gethostname()}:{dead.pid}")
        recovered = recover_dead_trials(study, log=lines.append)
        assert recovered == [trial.number]
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        assert len(waiting) == (1 if attempt < MAX_RETRY else 0), (attempt, lines)
    assert lines[-1].endswith(f"not queued again: trial {interrupted.number}'s worker died {MAX_RETRY + 1} times")
    trials = study.get_trials(deepcopy=False)
    assert {t.user_attrs.get("retry_of") for t in trials[1:]} == {interrupted.number}
