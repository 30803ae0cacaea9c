"""Everything facesearch keeps on an Optuna trial or study, in one place.

Workers write these keys as the trial runs; status, the live view, the report, the finishing
path and recovery read them back through ``TrialRecord``. A key is never spelled elsewhere.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

# ---------------------------------------------------------------- trial user attributes
CONFIG = "config"                # the full TrainConfig as a dict
PARAM_COUNT = "param_count"      # parameters of the embedding network (the cap rule)
HISTORY = "history"              # per epoch: epoch, loss, val_eer, lr, seconds
DEVICE = "device"
SECONDS = "seconds"              # wall time inside the objective
BEST_EPOCH = "best_epoch"
SKIPPED_IMAGES = "skipped_images"
RESUMED = "resumed"              # where a retried trial resumed from
RETRY_OF = "retry_of"            # the first trial of a retry chain, whose run folder a retry resumes
WORKER = "worker"                # host:pid of the process running the trial
SLURM_JOB = "slurm_job"          # the Slurm job running it: JOBID, or ARRAYJOBID_TASKID for an array task
PRUNE_REASON = "prune_reason"
PRUNED_BY = "pruned_by"          # which rule pruned it: one of PRUNE_RULES
FAIL_REASON = "fail_reason"
VAL_EER_CI = "val_eer_ci"        # [low, high]: 95 % identity-bootstrap interval of the best epoch's val EER
VAL_SCORES = "val_scores"        # path of the best epoch's val scores (ScoredPairs .npz), for paired tests
ESTIMATE = "estimate"            # the cost estimate made before training (search.cost.estimate.Estimate)
PROBE_SECONDS = "probe_seconds"  # time this trial spent measuring an uncalibrated point (counts as spent)
PROMOTED_FROM = "promoted_from"  # a promoted trial's proxy: {"study", "trial", "value"}

# ---------------------------------------------------------------- study user attributes
SIGNATURE = "facesearch:signature"   # hash of the spec as written: one space per study name
SPEC = "facesearch:spec"             # the spec as JSON (StudySpec.to_json)
DESCRIPTION = "description"
RETRAIN = "retrain"                  # the retrained best trial: where its model is, and its val ROC
RETRAINS = "retrains"                # retrain --top K: each retrained trial's record (no ROC), by number
METRIC = "val EER %"                 # the objective's name (study.set_metric_names)

# ---------------------------------------------------------------- the calibration (a study of its own)
CALIBRATION_STUDY = "facesearch:calibration"   # never a spec's name (specs allow no ':')
SPEED_KEY = "speed_key"              # a probe trial's device + speed_key, as sorted JSON
SPEED = "speed"                      # facenet.probe.Speed as a dict, once measured

# the rules that prune a trial, as stored under PRUNED_BY: these, or the spec's pruner by name
# (median, percentile, hyperband, successive_halving, threshold: spec.components.PRUNERS)
CAP = "cap"                          # over the parameter cap: never trained
INFEASIBLE = "infeasible"            # a configuration that can never run (facenet.runnable): never trained
NON_FINITE = "non-finite loss"
NOT_TRAINED = (CAP, INFEASIBLE)

# trial constraints (trial.set_constraint; > 0 = infeasible, and the sampler learns to avoid the region)
CAP_CONSTRAINT = "param_cap"
RUNNABLE_CONSTRAINT = "runnable"

# fail_reason prefixes of FAIL trials that are not failures of their configuration
INTERRUPTED = "interrupted"          # stopped by a signal: retried on resume
NOT_RUN = "budget already spent"     # asked for after another worker took the last trial of the budget
BUDGET = "budget"                    # a trial whose estimate did not fit what was left of budget.hours


@dataclass(frozen=True)
class TrialRecord:
    """A trial as facesearch reads it back (absent attributes read as None / empty)."""

    number: int
    state: TrialState
    value: float | None
    params: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    param_count: int | None = None
    history: list[dict] = field(default_factory=list)
    device: str | None = None
    seconds: float | None = None
    best_epoch: int | None = None
    resumed: str | None = None
    retry_of: int | None = None
    worker: str | None = None
    pruned_by: str | None = None
    reason: str = ""                 # why it was pruned or failed
    val_eer_ci: tuple[float, float] | None = None
    val_scores: str | None = None
    estimate: dict[str, Any] = field(default_factory=dict)
    probe_seconds: float = 0.0
    promoted_from: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, t: FrozenTrial) -> "TrialRecord":
        a = t.user_attrs
        retry = a.get(RETRY_OF)
        return cls(number=t.number, state=t.state, value=t.value, params=dict(t.params), config=a.get(CONFIG) or {},
                   param_count=a.get(PARAM_COUNT), history=a.get(HISTORY) or [], device=a.get(DEVICE),
                   seconds=a.get(SECONDS), best_epoch=a.get(BEST_EPOCH), resumed=a.get(RESUMED),
                   retry_of=None if retry is None else int(retry), worker=a.get(WORKER), pruned_by=a.get(PRUNED_BY),
                   reason=a.get(PRUNE_REASON) or a.get(FAIL_REASON) or "",
                   val_eer_ci=tuple(a[VAL_EER_CI]) if a.get(VAL_EER_CI) else None,
                   val_scores=a.get(VAL_SCORES), estimate=a.get(ESTIMATE) or {},
                   probe_seconds=a.get(PROBE_SECONDS) or 0.0, promoted_from=a.get(PROMOTED_FROM) or {})

    @property
    def trained(self) -> bool:
        """False for a trial that never trained (pruned by the cap or as infeasible before reading data)."""
        return self.pruned_by not in NOT_TRAINED

    @property
    def failure(self) -> bool:
        """A FAIL of the configuration or of the study (what ``budget.max_failures`` counts); not a trial
        interrupted, left by a dead worker (both retried) or never run."""
        return (self.state == TrialState.FAIL and bool(self.reason)
                and not self.reason.startswith((INTERRUPTED, NOT_RUN, BUDGET)))

    @property
    def spent(self) -> float:
        """Seconds of compute this trial used (training and any probe it ran), 0 before it ends."""
        return (self.seconds or 0.0) + self.probe_seconds

    @property
    def origin(self) -> int:
        """The trial whose run folder this one uses: itself, or the first of its retry chain."""
        return self.number if self.retry_of is None else self.retry_of


def origin_number(trial: optuna.trial.BaseTrial) -> int:
    """``TrialRecord.origin`` for a live trial too (a retry resumes its original's run folder)."""
    return int(trial.user_attrs.get(RETRY_OF, trial.number))


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return min(done, key=lambda t: t.value) if done else None


def stored_spec(study: optuna.Study) -> dict[str, Any]:
    """The spec a study was created from, as a dict ({} for a study made outside facesearch)."""
    stored = study.user_attrs.get(SPEC)
    return json.loads(stored) if isinstance(stored, str) else stored or {}
