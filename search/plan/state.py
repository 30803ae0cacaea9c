"""A plan's progress in the study storage, so every machine and every restart sees the same plan.

One study per plan, ``facesearch:plan:NAME`` (never a spec's name: specs allow no ':'), holding no trials;
its user attributes: ``plan`` (file signature, hours, device, state, active phase, calibration and finish
spend, the finishing outputs) and ``phase:NAME`` per phase (status, the fitted spec as YAML data for the
workers that follow, its knobs, share, estimate and measured spend). Only ``plan run`` writes it.
"""
from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import optuna

PREFIX = "facesearch:plan:"
PENDING, RUNNING, DONE = "pending", "running", "done"
FINISHING, FINISHED = "finishing", "done"


def study_name(plan: str) -> str:
    return PREFIX + plan


def now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


class PlanState:
    """Read and write one plan's state (``load`` is None before ``plan run`` first stored it)."""

    def __init__(self, storage: optuna.storages.BaseStorage, plan: str):
        self.storage, self.plan = storage, plan
        self._study: optuna.Study | None = None

    def exists(self) -> bool:
        return study_name(self.plan) in optuna.get_all_study_names(self.storage)

    def study(self) -> optuna.Study:
        if self._study is None:
            self._study = optuna.create_study(study_name=study_name(self.plan), storage=self.storage,
                                              load_if_exists=True)
        return self._study

    def load(self) -> dict[str, Any] | None:
        """{"plan": {...}, "phases": [row, ...]} in the plan's order, or None."""
        if not self.exists():
            return None
        attrs = optuna.load_study(study_name=study_name(self.plan), storage=self.storage).user_attrs
        head = attrs.get("plan")
        if head is None:
            return None
        return {"plan": head, "phases": [attrs.get(f"phase:{n}", {"name": n, "status": PENDING})
                                         for n in head["order"]]}

    def set(self, **fields: Any) -> None:
        study = self.study()
        head = {**study.user_attrs.get("plan", {}), **fields}
        study.set_user_attr("plan", head)

    def set_phase(self, name: str, **fields: Any) -> None:
        study = self.study()
        row = {"name": name, "status": PENDING, **study.user_attrs.get(f"phase:{name}", {}), **fields}
        study.set_user_attr(f"phase:{name}", row)


def fitted_raw(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A phase's YAML mapping with the fit's knobs written in (trials, hours, epochs, proxy fidelity)."""
    out = copy.deepcopy(raw)
    budget, fixed = dict(out.get("budget") or {}), dict(out.get("fixed") or {})
    budget["n_trials"] = overrides["n_trials"]
    budget["hours"] = max(overrides["hours"], 1e-6)
    if "epochs" in overrides:
        budget["epochs"] = overrides["epochs"]
        if "epochs" in fixed:
            fixed["epochs"] = overrides["epochs"]
    for key in ("resolution", "max_identities"):
        if key in overrides:
            fixed[key] = overrides[key]
    out["budget"], out["fixed"] = budget, fixed
    return out
