"""Run folders: a study's own, keyed by its identity, never only by its name.

A study's trials train in ``<runs>/<name>-<stamp>/trial-NNNN``. The stamp is a short random id stored on the
study when it is created (the user attribute ``STAMP``), so a study deleted and created again under the same
name, or a study of that name in another storage sharing the working folder, never finds the other's
checkpoints. Inside its folder a trial resumes only its own checkpoint (a retry its origin's), and only if
the checkpoint's config is the trial's (``foreign_checkpoint``).
"""
from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

import optuna

from facenet.preflight import config_changes, stored_config

STAMP = "run_stamp"      # study user attribute: the key of its run folder
WAIT_FOR_STAMP = 5.0     # seconds a worker waits for the study's creator (another worker) to stamp it


def new_stamp() -> str:
    return secrets.token_hex(4)


def stamp_new_study(study: optuna.Study) -> None:
    study.set_user_attr(STAMP, new_stamp())


def study_stamp(study: optuna.Study, wait: float = 0.0) -> str:
    """The study's stamp; a study without one (made by an older facesearch, or by hand) gets one now, after
    waiting up to ``wait`` seconds for a creator that is stamping it right now."""
    deadline = time.monotonic() + wait
    while True:
        stamp = study.user_attrs.get(STAMP)
        if stamp or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if not stamp:
        stamp_new_study(study)
        stamp = study.user_attrs[STAMP]   # the stored one: another process may have stamped it a moment ago
    return stamp


def study_folder(runs_root: str | Path, study: optuna.Study) -> Path:
    return Path(runs_root) / f"{study.study_name}-{study_stamp(study)}"


def known_folder(runs_root: str | Path, study: optuna.Study) -> Path:
    """The study's folder without writing anything: a study made before stamps has its runs in
    ``<runs>/<name>`` (read-only and finishing commands must not stamp it)."""
    stamp = study.user_attrs.get(STAMP)
    return Path(runs_root) / (f"{study.study_name}-{stamp}" if stamp else study.study_name)


def trial_dir(folder: str | Path, number: int) -> Path:
    """A trial's run folder inside its study's folder (``study_folder``)."""
    return Path(folder) / f"trial-{number:04d}"


def foreign_checkpoint(config) -> str | None:
    """Why the checkpoint in ``config.run_dir`` must not be resumed by this config (another config trained
    it), or None when there is none or it is this config's own."""
    stored = stored_config(config.run_dir)
    if stored is None:
        return None
    changes = config_changes(config, stored)
    if not changes:
        return None
    shown = ", ".join(changes[:3]) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")
    return (f"the checkpoint in {config.run_dir} was trained with another config ({shown}); not loaded, this "
            f"trial fails and the study goes on (move that folder away to train the trial afresh)")


def remove_study_folders(runs_root: str | Path, name: str, stamp: str | None) -> list[Path]:
    """Delete a study's run folder (and, for a study made before run folders were stamped, ``<runs>/<name>``
    when it holds only trial folders); the folders removed."""
    root = Path(runs_root)
    candidates = [root / f"{name}-{stamp}"] if stamp else []
    legacy = root / name
    if legacy.is_dir() and all(p.name.startswith("trial-") or p.name.startswith("worker-")
                               for p in legacy.iterdir()):
        candidates.append(legacy)
    removed = []
    for folder in candidates:
        if folder.is_dir():
            shutil.rmtree(folder)
            removed.append(folder)
    return removed
