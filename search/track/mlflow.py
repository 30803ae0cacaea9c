"""MLflow: one parent run per study, one nested run per trial (and per retrain) with per-epoch metrics.

Written through ``MlflowClient`` with explicit run ids (no global active run, so it is safe on the tracking
thread). Runs go to the experiment ``$MLFLOW_EXPERIMENT_NAME``, else ``facesearch``.
"""
from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .base import EpochMetrics, RunEnd, RunInfo, Tracker
from .registry import TrackingError

EXPERIMENT = "facesearch"
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}   # Optuna state -> MLflow run status
PROBE_TIMEOUT = 5.0   # seconds a tracking server has to answer its health check


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, target: str, runs_root: Path):
        super().__init__(target, runs_root)
        self.client = None
        self.experiment_id = ""
        self.parents: dict[str, str] = {}       # study -> its parent run's id
        self.runs: dict[str, str] = {}          # RunInfo.key -> run id

    @classmethod
    def validate(cls, target: str) -> None:
        """MLflow 3 refuses a file store (``./mlruns``, ``file:...``) unless MLFLOW_ALLOW_FILE_STORE is set."""
        if "://" in target and not target.startswith("file:"):
            return
        try:
            from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE
        except ImportError:   # an MLflow that still takes file stores
            return
        if not MLFLOW_ALLOW_FILE_STORE.get():
            raise TrackingError(f"--mlflow {target}: this MLflow keeps runs in a database or on a server, not in "
                                f"a folder; use sqlite:///mlflow.db (or set MLFLOW_ALLOW_FILE_STORE=true)")

    def check(self) -> None:
        """A server that does not answer is found here, in seconds, rather than by the client's retries."""
        if self.target.startswith(("http://", "https://")):
            try:
                urllib.request.urlopen(self.target.rstrip("/") + "/health", timeout=PROBE_TIMEOUT).close()
            except urllib.error.HTTPError:
                pass   # it answered
            except (OSError, ValueError) as e:
                raise ConnectionError(f"no answer from {self.target}: {getattr(e, 'reason', e)}") from None
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):   # their INFO lines (creating tables...) are not the user's business
            logging.getLogger(name).setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri=self.target)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        found = self.client.get_experiment_by_name(name)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(
            name, artifact_location=self._artifact_location())

    def _artifact_location(self) -> str | None:
        """Beside the database for a sqlite store (MLflow's default is ./mlruns wherever the command ran)."""
        if self.target.startswith("sqlite:///"):
            return (Path(self.target.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
        return None

    def study_start(self, study: str, description: str, settings: dict[str, Any]) -> None:
        self._parent(study, description, settings)

    def study_end(self, study: str, summary: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        run_id, now = self._parent(study), int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in summary.items() if isinstance(v, (int, float))]
        self.client.log_batch(run_id, metrics=metrics)
        self.client.set_terminated(run_id, "FINISHED")

    def _parent(self, study: str, description: str = "", settings: dict[str, Any] | None = None) -> str:
        """The study's parent run: the one an earlier process or worker made, else a new one."""
        if study in self.parents:
            return self.parents[study]
        query = f"tags.`facesearch.study` = '{study}' and tags.`facesearch.kind` = 'study'"
        found = self.client.search_runs([self.experiment_id], query, max_results=1, order_by=["start_time ASC"])
        if found:
            run_id = found[0].info.run_id
        else:
            run_id = self.client.create_run(self.experiment_id, run_name=study, tags={
                "facesearch.study": study, "facesearch.kind": "study", "mlflow.note.content": description}
            ).info.run_id
            if settings:
                self._params(run_id, settings)
        self.parents[study] = run_id
        return run_id

    def _params(self, run_id: str, values: dict[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(k, (v if isinstance(v, str) else json.dumps(v))[:6000]) for k, v in values.items()]
        for i in range(0, len(params), 100):   # MLflow takes 100 params per batch
            self.client.log_batch(run_id, params=params[i:i + 100])

    def run_start(self, run: RunInfo) -> None:
        tags = {"facesearch.kind": run.kind, "facesearch.run_dir": str(run.run_dir)}
        if run.study:
            tags |= {"facesearch.study": run.study, "mlflow.parentRunId": self._parent(run.study)}
        if run.number is not None:
            tags["facesearch.trial"] = str(run.number)
        run_id = self.client.create_run(self.experiment_id, run_name=run.name, tags=tags).info.run_id
        self.runs[run.key] = run_id
        self._params(run_id, run.params)
        self.client.log_dict(run_id, run.config, "config.json")

    def epoch(self, run: RunInfo, m: EpochMetrics) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = {"train_loss": m.loss, "val_eer": m.val_eer, "lr": m.lr, "images_per_s": m.images_per_s}
        self.client.log_batch(self.runs[run.key], metrics=[Metric(k, float(v), now, m.epoch)
                                                           for k, v in values.items()])

    def run_end(self, run: RunInfo, end: RunEnd) -> None:
        from mlflow.entities import Metric, RunTag

        run_id = self.runs[run.key]
        now = int(time.time() * 1000)
        values = {"best_val_eer": end.value, "param_count": end.param_count, "best_epoch": end.best_epoch}
        if end.interval:
            values |= {"best_val_eer_low": end.interval[0], "best_val_eer_high": end.interval[1]}
        tags = {"state": end.state, "pruned_by": end.pruned_by, "reason": end.reason}
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items() if v is not None],
                              tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items() if v])
        self.client.set_terminated(run_id, STATUS.get(end.state, "FINISHED"))

    def artifacts(self, run: RunInfo, paths: list[Path]) -> None:
        run_id = self.runs[run.key]
        for path in paths:
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), path.name)
            else:
                self.client.log_artifact(run_id, str(path))


TRACKER = MlflowTracker
