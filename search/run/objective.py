"""The objective: one trial's params -> a TrainConfig -> cap check -> ``facenet.fit`` -> best val EER.

Every trial keeps its experiment record as user attributes: the full config, the
parameter count, per-epoch history (loss, val EER, lr, seconds), device and total time,
and, for a pruned or failed trial, the reason.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import optuna
import torch

from facenet import NonFiniteLoss, count_params, fit
from facenet.errors import ConfigError, UserError
from facenet.eval.stats import ScoredPairs
from facenet.runnable import check_runnable
from facenet.train import BEST_VAL_SCORES, EpochResult

from .. import record as rec
from ..logline import epoch_line
from ..record import origin_number
from ..spec import StudySpec, suggest
from ..track import EpochMetrics, RunInfo, Tracking, open_tracking
from .folders import foreign_checkpoint, study_folder, trial_dir
from .tracked import study_settings, trial_end, trial_run


class Objective:
    """One trial of ``spec``: ``study.optimize(Objective(spec), n_trials=...)``; returns the best val EER (%).

    The spec's ``tracking:`` backends get every trial (off the training thread); ``close()`` (or ``with``)
    sends what is left when done::

        from search import Objective, load_spec
        with Objective(load_spec("studies/quickstart.yaml"), runs_root="runs") as objective:
            study.optimize(objective, n_trials=4)
    """

    def __init__(self, spec: StudySpec, runs_root: str | Path = "runs", device: str = "auto",
                 log: Callable[[str], None] = print, tracking: Tracking | None = None):
        self.spec, self.runs_root, self.device, self.log = spec, Path(runs_root), device, log
        self._folders: dict[str, Path] = {}   # study name -> its run folder (keyed by the study's stamp)
        self.tracking = tracking if tracking is not None else open_tracking(spec.tracking, self.runs_root, log)
        self.tracking.study_start(spec.name, spec.description, study_settings(spec))

    def folder_of(self, trial: optuna.trial.BaseTrial) -> Path:
        study = getattr(trial, "study", None)
        if study is None:   # a point outside any study (a fixed trial): the spec's name alone
            return self.runs_root / self.spec.name
        if study.study_name not in self._folders:
            self._folders[study.study_name] = study_folder(self.runs_root, study)
        return self._folders[study.study_name]

    def close(self, wait: float = 60.0) -> None:
        """Send the tracking events still queued (waits for slow backends, ``wait`` seconds at most)."""
        self.tracking.close(wait)

    def __enter__(self) -> "Objective":
        return self

    def __exit__(self, kind, *_) -> None:
        self.close(60.0 if kind is None else 10.0)   # stopping on an error or a signal: do not linger

    def config_for(self, trial: optuna.trial.BaseTrial):
        params = suggest(trial, self.spec.space, self.spec.fixed)
        run_dir = trial_dir(self.folder_of(trial), origin_number(trial))
        config = self.spec.to_config(params).replace(run_dir=str(run_dir))
        # the worker's --device when given, else the spec's (checked before any worker starts)
        return config if self.device == "auto" else config.replace(device=self.device)

    def __call__(self, trial: optuna.Trial) -> float:
        config = self.config_for(trial)
        if not self.tracking:
            return self._train(trial, config, None)
        run = trial_run(self.spec, trial, config)
        self.tracking.run_start(run)
        try:
            value = self._train(trial, config, run)
        except BaseException as e:   # pruned, failed or interrupted: the backends get the state and why
            self.tracking.run_end(run, trial_end(trial, e, None))
            raise
        self.tracking.run_end(run, trial_end(trial, None, value))
        return value

    def _train(self, trial: optuna.Trial, config, run: RunInfo | None) -> float:
        trial.set_user_attr(rec.CONFIG, config.to_dict())
        self._check_feasible(trial, config)

        history: list[dict] = []
        start = time.perf_counter()

        def on_epoch(r: EpochResult) -> None:
            history.append({k: getattr(r, k) for k in ("epoch", "loss", "val_eer", "lr", "seconds")})
            trial.report(r.val_eer, r.epoch)
            trial.set_user_attr(rec.HISTORY, history)
            if not r.replayed:   # the epochs this process trains: a log shows a resumed trial going on
                self.log(epoch_line(trial.number, r.epoch, r.epochs, r.loss, r.val_eer, r.lr, r.images_per_s,
                                    r.seconds))
            if run is not None:
                self.tracking.epoch(run, EpochMetrics(r.epoch, r.loss, r.val_eer, r.lr, r.images_per_s))
            # asked at every epoch so the rung pruners record the rung; a trial that trained its full
            # budget completes whatever the rule says (pruning it then saves nothing and loses its result)
            if trial.should_prune() and r.epoch < config.epochs:
                rule = self.spec.pruner["name"]
                keep_interval(trial, config.run_dir)
                self._prune(trial, rule, f"{rule} rule at epoch {r.epoch}: val EER {r.val_eer:.2f}%")

        prefix = f"[trial {trial.number}]"

        def fit_log(message: str) -> None:
            if not message.startswith("epoch "):   # on_epoch writes those, with fields for the JSON format
                self.log(f"{prefix} {message}")

        if config.resume and (refusal := foreign_checkpoint(config)):
            self._fail(trial, refusal)   # this trial's own failure: the circuit breaker does not stop the study
        if config.resume and (Path(config.run_dir) / "last.pt").exists():
            trial.set_user_attr(rec.RESUMED, f"from the checkpoint in {config.run_dir}")
        try:
            result = fit(config, on_epoch=on_epoch, log=fit_log)
        except optuna.TrialPruned:
            raise
        except NonFiniteLoss as e:
            keep_interval(trial, config.run_dir)
            self._prune(trial, rec.NON_FINITE, str(e))
        except torch.OutOfMemoryError:
            self._fail(trial, f"CUDA out of memory at batch_size {config.batch_size} x n_per_class "
                              f"{config.n_per_class}, resolution {config.resolution}")
        except ConfigError as e:   # this point cannot run (one check_runnable cannot see without data)
            self._fail(trial, str(e))
        except (UserError, OSError) as e:   # data gone, disk full: not this configuration's fault
            self._fail(trial, str(e), StudyCannotRun)
        except Exception as e:   # a bug: the trial keeps the reason, the worker stops with the traceback
            trial.set_user_attr(rec.FAIL_REASON, f"{type(e).__name__}: {e}"[:500])
            raise
        finally:
            trial.set_user_attr(rec.SECONDS, round(time.perf_counter() - start, 2))
        trial.set_user_attr(rec.DEVICE, result.device)
        trial.set_user_attr(rec.BEST_EPOCH, result.best_epoch)
        keep_interval(trial, result.run_dir, result.val_eer_ci)
        if result.skipped_images:
            trial.set_user_attr(rec.SKIPPED_IMAGES, result.skipped_images)
        return result.best_val_eer

    def _check_feasible(self, trial: optuna.Trial, config) -> None:
        """Prune, before any data is read, a point that can never run or is over the cap. Every trial sets
        both constraints (> 0: infeasible), so the sampler learns to avoid those regions."""
        cap = self.spec.param_cap
        try:
            check_runnable(config)
            count = count_params(config)
        except ConfigError as e:
            trial.set_constraint(rec.RUNNABLE_CONSTRAINT, 1.0)
            trial.set_constraint(rec.CAP_CONSTRAINT, 0.0)
            self._prune(trial, rec.INFEASIBLE, f"cannot run: {e} (not trained)")
        trial.set_user_attr(rec.PARAM_COUNT, count)
        trial.set_constraint(rec.RUNNABLE_CONSTRAINT, 0.0)
        trial.set_constraint(rec.CAP_CONSTRAINT, (count - cap) / cap)
        if count > cap:
            self._prune(trial, rec.CAP, f"{count:,} parameters over the {cap:,} cap (not trained)")

    def _prune(self, trial: optuna.Trial, rule: str, reason: str) -> None:
        """Prune the trial, recording which rule did it (``record.PRUNED_BY``) and why."""
        trial.set_user_attr(rec.PRUNED_BY, rule)
        trial.set_user_attr(rec.PRUNE_REASON, reason)
        self.log(f"[trial {trial.number}] pruned: {reason}")
        raise optuna.TrialPruned(reason)

    def _fail(self, trial: optuna.Trial, reason: str, error: type[Exception] | None = None) -> None:
        """Mark the trial FAIL with the reason; the worker catches TrialFailed and goes on (StudyCannotRun:
        it stops)."""
        trial.set_user_attr(rec.FAIL_REASON, reason)
        self.log(f"[trial {trial.number}] failed: {reason}")
        raise (error or TrialFailed)(reason)


def keep_interval(trial: optuna.Trial, run_dir: str, ci: tuple[float, float] | None = None) -> None:
    """Record the best epoch's val EER interval and where its scores are (``best`` compares them paired).

    A stopped (pruned) trial has no RunResult: its interval comes from the scores its best epoch left.
    """
    path = (Path(run_dir) / BEST_VAL_SCORES).resolve()
    if not path.exists():
        return
    if ci is None:
        interval = ScoredPairs.load(path).interval()
        ci = (interval.low, interval.high)
    if all(math.isfinite(v) for v in ci):   # too small a list to resample gives NaN: keep no interval
        trial.set_user_attr(rec.VAL_EER_CI, [float(ci[0]), float(ci[1])])
    trial.set_user_attr(rec.VAL_SCORES, str(path))


class TrialFailed(Exception):
    """One configuration could not run; the study goes on with the next trial."""


class StudyCannotRun(UserError):
    """A failure that is not the configuration's own (data gone, disk full): every trial would fail alike."""
