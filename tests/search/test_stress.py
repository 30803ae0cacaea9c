"""8 worker processes x 100 trials of a fast objective on each storage: no storage error,
exactly 100 finished trials, unique numbers, nothing left running."""
from __future__ import annotations

import multiprocessing as mp
import time

import optuna
import pytest
from optuna.trial import TrialState

from search.storage import open_storage
from search.run.worker import optimize_until

WORKERS, TRIALS = 8, 100


def _worker(url: str, name: str, seed: int) -> None:
    study = optuna.load_study(study_name=name, storage=open_storage(url),
                              sampler=optuna.samplers.RandomSampler(seed=seed))

    def fast(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -1, 1)
        trial.report(x * x, 1)
        return x * x

    optimize_until(study, fast, TRIALS, log=lambda m: None)


def _stress(url: str, name: str) -> float:
    optuna.create_study(study_name=name, storage=open_storage(url))
    ctx = mp.get_context("fork")    # separate processes, without paying torch's import eight times
    start = time.perf_counter()
    procs = [ctx.Process(target=_worker, args=(url, name, i)) for i in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    elapsed = time.perf_counter() - start
    assert [p.exitcode for p in procs] == [0] * WORKERS, "a worker hit an error"
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == TRIALS
    assert len({t.number for t in trials}) == len(trials)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # a trial that lost the race for the last budget slot is failed with its reason, never run
    for t in trials:
        if t.state == TrialState.FAIL:
            assert "budget already spent" in t.user_attrs["fail_reason"]
    print(f"{name}: {len(trials)} trials ({len(finished)} finished) by {WORKERS} processes in {elapsed:.1f}s")
    return elapsed


@pytest.mark.slow
def test_stress_journal(tmp_path):
    _stress(str(tmp_path / "stress.journal"), "stress-journal")


@pytest.mark.slow
def test_stress_postgres(postgres_url):
    _stress(postgres_url, f"stress-pg-{int(time.time())}")
