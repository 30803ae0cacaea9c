"""The tracking backends by name (``tracking:`` keys in a spec, ``--mlflow`` / ``--wandb`` / ``--tensorboard``).

Each entry names the module holding the backend's ``Tracker`` class and the package its extra installs;
modules are imported only when a study asks for their backend.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from facenet.errors import UserError

# name -> (module under search.track, the package it needs, what the value names); its pip extra: the name
BACKENDS: dict[str, tuple[str, str, str]] = {
    "mlflow": ("mlflow", "mlflow", "a tracking URI (http://host:5000, file:./mlruns, sqlite:///mlflow.db)"),
    "wandb": ("wandb", "wandb", "a W&B project name (offline unless WANDB_MODE says otherwise)"),
    "tensorboard": ("tensorboard", "tensorboard", "a folder for event files, or true: each trial's run folder"),
}
OFF = "off"   # --mlflow off: not this backend, even if the spec names it


class TrackingError(UserError, ValueError):
    """A tracking target that cannot work (unknown backend, missing package); one line."""


def tracker_class(name: str):
    module = importlib.import_module(f".{BACKENDS[name][0]}", __package__)
    return module.TRACKER


def parse_targets(raw: Any, where: str = "tracking") -> dict[str, str]:
    """``{backend: target}`` from a spec's ``tracking:`` mapping; raises TrackingError naming the key."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TrackingError(f"{where}: expected a mapping such as {{mlflow: file:./mlruns}}, got {raw!r}")
    targets = {}
    for name, value in raw.items():
        if name not in BACKENDS:
            raise TrackingError(f"{where}.{name}: unknown tracking backend; use {', '.join(BACKENDS)}")
        if value is True and name == "tensorboard":
            value = ""
        if not isinstance(value, str) or (not value and name != "tensorboard"):
            raise TrackingError(f"{where}.{name}: expected {BACKENDS[name][2]}, got {value!r}")
        targets[name] = value
    return targets


def merge_targets(spec_targets: dict[str, str], flags: dict[str, str | None]) -> dict[str, str]:
    """The spec's targets overridden by the command's flags (``off`` drops a backend); each package present."""
    targets = dict(spec_targets)
    for name, value in flags.items():
        if value is None:
            continue
        if value == OFF:
            targets.pop(name, None)
        else:
            targets[name] = "" if name == "tensorboard" and value.lower() == "true" else value
    for name, target in targets.items():
        package = BACKENDS[name][1]
        if importlib.util.find_spec(package) is None:
            raise TrackingError(f"tracking with {name} needs the {package!r} package: "
                                f"pip install 'facesearch[{name}]' (or drop {name} from tracking:)")
        tracker_class(name).validate(target)
    return targets


def target_flags(targets: dict[str, str]) -> list[str]:
    """Command-line flags that give a worker process exactly these targets (the others ``off``)."""
    return [arg for name in BACKENDS for arg in (f"--{name}", targets.get(name, OFF) or "true")]
