"""When a plan's Slurm job (``facesearch plan submit --requeue``) runs again: while the plan is not finished
and it moved on in the job that ends (``search.run.submit`` calls these through its ``Target``)."""
from __future__ import annotations

import optuna

from ..storage import open_storage
from .state import DONE, FINISHED, FINISHING, PlanState


def plan_done(name: str, progress_at_start: int | None, url: str | None = None) -> str | None:
    """Why a plan's job should not run again, or None: the plan finished, or it moved on not at all in this job
    (``progress_at_start``: ``plan_progress`` when the job started; None: not known)."""
    state = PlanState(open_storage(url), name).load()
    head = state["plan"] if state else {}
    if head.get("state") == FINISHED:
        return "the plan is done"
    if progress_at_start is not None and plan_progress(name, url) <= progress_at_start:
        if head.get("state") == FINISHING:   # retrain, export and score start again in each job
            return "the plan's finishing (retrain, export, score) did not end within one job; give more --time"
        return "the plan moved on not at all in this job; give --time room for start-up, calibration and an epoch"
    return None


def plan_progress(name: str, url: str | None = None) -> int:
    """A count that grows whenever a plan moves on: the plan stored (0 before it first ran), epochs reported in
    its phases' studies, phases done, its finishing begun. Finishing itself shows no progress here."""
    storage = open_storage(url)
    state = PlanState(storage, name).load()
    if state is None:
        return 0
    names = set(optuna.get_all_study_names(storage))
    epochs = sum(len(t.intermediate_values)
                 for row in state["phases"] if (row.get("raw") or {}).get("name") in names
                 for t in optuna.load_study(study_name=row["raw"]["name"], storage=storage).get_trials(deepcopy=False))
    return (1 + epochs + sum(row.get("status") == DONE for row in state["phases"])
            + (state["plan"].get("state") == FINISHING))
