"""Before a trial trains: its cost estimate, recorded on the trial; with ``budget: {hours: H}``, the trial
runs only if that estimate fits what is left of the study's GPU-hours.

What is left is read from the storage, so every worker on every machine shares one budget: the
seconds of every finished trial (and of the probes they ran), plus, for each trial still running,
the larger of its estimate and its time so far. As with ``budget.n_trials``, trial numbers settle
races: a trial counts only the running trials numbered before it (waiting, briefly, for any of
those that has not recorded its estimate yet), and every later trial counts it.
"""
from __future__ import annotations

import datetime as dt
import statistics
import time
from typing import Callable

import optuna
from optuna.trial import TrialState

from facenet.config import TrainConfig
from facenet.errors import UserError
from facenet.units import fmt_duration

from ..record import BUDGET, ESTIMATE, FAIL_KIND, FAIL_REASON, PROBE_SECONDS, TrialRecord
from ..trials import BudgetSpent
from ..spec import StudySpec
from .calibration import SharedCalibration
from .datasize import DataSizes
from .estimate import Estimate, estimate
from .spend import running_cost, spent_seconds

RECENT = 5   # trials of the same point whose measured pace corrects the next estimate

def committed_before(study: optuna.Study, number: int, wait_limit: float, poll: float) -> float:
    """Seconds spent or committed by every trial but the running ones numbered ``number`` or later."""
    deadline = time.time() + wait_limit
    while True:
        trials = study.get_trials(deepcopy=False)
        now = dt.datetime.now()
        running = [t for t in trials if t.state == TrialState.RUNNING and t.number < number]
        costs = [running_cost(t, now) for t in running]
        if all(c is not None for c in costs) or time.time() > deadline:
            elapsed = [(now - t.datetime_start).total_seconds() if t.datetime_start else 0.0 for t in running]
            return spent_seconds(trials) + sum(c if c is not None else e for c, e in zip(costs, elapsed))
        time.sleep(poll)   # an earlier trial is still estimating (or probing) its cost


class CostGuard:
    """Called by a worker with each new trial before the objective runs it (see ``optimize_until``)."""

    def __init__(self, spec: StudySpec, study: optuna.Study, calibration: SharedCalibration,
                 config_for: Callable[[optuna.trial.BaseTrial], TrainConfig],
                 log: Callable[[str], None] = print,
                 sizes: DataSizes | None = None, poll: float = 1.0, wait_limit: float = 1800.0):
        self.spec, self.study, self.calibration, self.log = spec, study, calibration, log
        self.config_for = config_for
        self.sizes = sizes or DataSizes()
        self.poll, self.wait_limit = poll, wait_limit

    def estimate(self, trial: optuna.Trial) -> Estimate | None:
        """The trial's estimate, recorded on it; None for a trial that will not train or cannot be measured
        (over the cap, or a config the objective will fail with the same error)."""
        import torch

        from facenet.runnable import feasibility

        config = self.config_for(trial)
        if not feasibility(config, self.spec.param_cap).trains:   # the objective prunes it before reading data
            return None
        try:
            speed, probed = self.calibration.speed_for(config)
            cost = estimate(config, speed, self.sizes, point=self.calibration.point(config))
        except (UserError, torch.OutOfMemoryError) as e:
            self.log(f"[trial {trial.number}] no cost estimate: {e}")
            return None
        cost = self.as_recently_measured(cost)
        if probed:
            trial.set_user_attr(PROBE_SECONDS, round(probed, 2))
        trial.set_user_attr(ESTIMATE, cost.to_dict())
        return cost

    def as_recently_measured(self, cost: Estimate) -> Estimate:
        """The estimate scaled as the study's last ``RECENT`` trials at the same point ran against theirs (at any
        point while none ran at this one): the probe is one moment, and on shared machines (or a GPU that heats
        up) the pace drifts, for every point alike."""
        same, any_point = [], []
        ended = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        for t in reversed(ended):
            r = TrialRecord.of(t)
            past = r.estimate
            if past is None or not r.seconds or not t.intermediate_values:
                continue
            ratio = r.seconds / (past.for_epochs(len(t.intermediate_values)) / past.scale)
            if len(any_point) < RECENT:
                any_point.append(ratio)
            if past.point == cost.point:
                same.append(ratio)
                if len(same) == RECENT:
                    break
        ratios = same or any_point
        return cost.rescaled(statistics.median(ratios), len(ratios)) if ratios else cost

    def __call__(self, trial: optuna.Trial) -> None:
        cost = self.estimate(trial)
        if cost is None or self.spec.hours is None:
            return
        budget = self.spec.hours * 3600
        left = budget - committed_before(self.study, trial.number, self.wait_limit, self.poll)
        if cost.seconds > left:
            reason = (f"{BUDGET}: estimated {fmt_duration(cost.seconds)} > {fmt_duration(max(left, 0))} left of "
                      f"{self.spec.hours:g} GPU-hours (not run)")
            trial.set_user_attr(FAIL_REASON, reason)
            trial.set_user_attr(FAIL_KIND, BUDGET)
            self.log(f"[trial {trial.number}] {reason}; this worker stops")
            raise BudgetSpent(reason)

    @classmethod
    def for_worker(cls, spec: StudySpec, study: optuna.Study, storage: optuna.storages.BaseStorage,
                   config_for: Callable[[optuna.trial.BaseTrial], TrainConfig],
                   log: Callable[[str], None] = print) -> "CostGuard":
        """The guard of a worker process: the storage's calibration, data sizes counted once."""
        return cls(spec, study, SharedCalibration(storage, log), config_for, log)
