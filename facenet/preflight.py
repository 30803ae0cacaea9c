"""Checks a run passes before it starts: its data, its device, the folders it writes, its run folder.

Each raises a ``UserError`` with one line naming the input and the fix, and writes nothing (a folder
that does not exist yet is checked for whether it could be created). ``search`` runs them before any
worker starts; ``facesearch train`` and ``score`` before they train or score.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from .config import TrainConfig
from .errors import ConfigError, DataError, UserError

# fields that change how a run is carried out, not what it trains: a run folder may resume under other values
RUNTIME_FIELDS = ("device", "workers", "eval_batch", "run_dir", "resume", "cache_dir", "compile")


class FolderError(UserError, OSError):
    """A folder a run must write into that cannot be written or created."""


def check_writable(folder: str | Path, what: str, fix: str = "") -> None:
    """``folder`` is a writable folder, or could be created as one (nothing is created here)."""
    folder = Path(folder).absolute()
    probe = folder
    while not probe.exists():
        if probe.is_symlink() or probe.parent == probe:   # a dangling link, or nothing exists at all
            break
        probe = probe.parent
    problem = ""
    if not probe.is_dir():
        problem = f"{probe} is not a folder"
    elif not os.access(probe, os.W_OK | os.X_OK):
        problem = "read-only file system" if _read_only(probe) else f"no write permission in {probe}"
    if problem:
        raise FolderError(f"{what} {folder}: cannot write there ({problem}){'; ' + fix if fix else ''}")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError as e:
        return e.errno == errno.EROFS


def check_device(name: str) -> None:
    from .devices import resolve_device

    resolve_device(name)


def check_data(config: TrainConfig) -> None:
    """The training folder and the validation pair list, as training reads them."""
    from .data.folders import IdentityFolder, PairList

    IdentityFolder.scan(config.train_path)
    PairList.read(config.val_path, config.val_list, config.max_val_pairs).check_both_labels(
        Path(config.val_path) / config.val_list)


def cache_folders(config: TrainConfig) -> list[Path]:
    from .data.cache import default_cache_dir

    if config.cache_dir:
        return [Path(config.cache_dir)]
    roots = (config.train_path, config.val_path)
    return list(dict.fromkeys(Path(default_cache_dir(Path(root))) for root in roots))


def check_cache(config: TrainConfig) -> None:
    for folder in cache_folders(config):
        _check_cache_folder(folder)


def _check_cache_folder(folder: str | Path) -> None:
    if Path(folder).is_dir():   # may hold a complete cache, read without writing (a shared, prebuilt one);
        return                  # a cache that must be built there says so in one line when it starts
    check_writable(folder, "cache folder", "set FACESEARCH_CACHE (or cache_dir) to a writable folder")


def check_run(config: TrainConfig, run_dir: bool = True) -> None:
    """Everything ``fit(config)`` needs before it starts, checked without writing anything."""
    from .models import count_params
    from .runnable import check_runnable

    check_runnable(config)
    count_params(config)          # the model builds (on the meta device: no memory, milliseconds)
    check_device(config.device)
    check_data(config)
    check_cache(config)
    if run_dir:
        check_writable(config.run_dir, "run folder", "choose another run_dir")


def stored_config(run_dir: str | Path) -> dict | None:
    """The config of the run a folder holds (its ``config.json`` beside a checkpoint), or None for a folder
    without a run to resume."""
    import json

    path = Path(run_dir) / "config.json"
    if not (path.is_file() and (Path(run_dir) / "last.pt").is_file()):
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable run config ({e}); remove it or choose another run_dir") from None


def config_changes(config: TrainConfig, stored: dict) -> list[str]:
    """``field old -> new`` for every field that changes what is trained."""
    mine = config.to_dict()
    return [f"{k} {stored.get(k)!r} -> {v!r}" for k, v in mine.items()
            if k not in RUNTIME_FIELDS and stored.get(k, v) != v]


def check_same_run(config: TrainConfig) -> None:
    """A run folder that holds a run of another config is refused (its checkpoint would be resumed)."""
    stored = stored_config(config.run_dir)
    if stored is None:
        return
    changes = config_changes(config, stored)
    if changes:
        shown = ", ".join(changes[:3]) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")
        raise ConfigError(f"run folder {config.run_dir} holds a run with another config ({shown}); "
                          f"choose another run_dir, or pass --resume to continue that run with this config")


def check_scoring(pair_root: str | Path, out: str | Path, device: str, cache_dir: str | Path = "") -> None:
    """``score``: the device, the cache of the pair list's images, and the score file's folder."""
    from .data.cache import default_cache_dir

    check_device(device)
    _check_cache_folder(Path(cache_dir) if str(cache_dir) else default_cache_dir(Path(pair_root)))
    check_writable(Path(out).absolute().parent, "score file folder", "choose another --out")


def fresh_run_dir(base: str | Path) -> Path:
    """``base/<date>-<time>`` (with a counter if two runs start in one second): a new run's own folder."""
    import datetime as dt

    stem = Path(base) / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder, n = stem, 1
    while folder.exists():
        n += 1
        folder = stem.with_name(f"{stem.name}-{n}")
    return folder


def latest_run(base: str | Path) -> Path | None:
    """The newest run folder under ``base`` (dated names sort by time), or None."""
    runs = sorted(p.parent for p in Path(base).glob("*/config.json"))
    return runs[-1] if runs else None


def prepare_run(config: TrainConfig, named_run_dir: bool, resume: bool) -> TrainConfig:
    """The config ``facesearch train`` runs, checked: without a named run_dir, a new dated folder under
    ``run_dir`` (with ``resume``, the newest one there); a named folder holding another config's run is
    refused unless ``resume``."""
    if not named_run_dir:
        base = config.run_dir
        folder = latest_run(base) if resume else fresh_run_dir(base)
        if folder is None:
            raise ConfigError(f"--resume: no run in {base} to resume; name one with --set run_dir=FOLDER")
        config = config.replace(run_dir=str(folder))
    check_run(config)
    if named_run_dir and not resume:
        check_same_run(config)
    return config
