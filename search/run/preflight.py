"""Preflight: what a study needs, checked before any worker starts and before anything is written.

The storage (reached, or for a journal not yet there, creatable), ``from:`` (resolved), the cap, the GPUs,
the device, the data folders and pair lists of every value the space can give them, and write access to
the runs and cache folders. A failure is a ``UserError``: one line, exit status 2, the storage as it was.
A space that can draw a point that can never run gets one warning line (such trials are pruned as
infeasible at run time).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import optuna

from facenet.errors import ConfigError
from facenet.preflight import check_cache, check_data, check_device, check_writable

from ..spec import SpecError, StudySpec, apply_from, smallest_param_count, unrunnable_point
from ..spec.schema import DATA_FIELDS
from ..spec.space import distinct_configs
from ..storage import StorageError, is_database, open_storage, redact, runs_root, storage_url

# the fields whose every value the space can draw is checked: where the data is, the device, the cache
CHECKED_FIELDS = (*DATA_FIELDS.values(), "device", "cache_dir")


def check_storage(url: str | None) -> optuna.storages.BaseStorage | None:
    """The storage, opened; None for a journal file that does not exist yet (whose folder can be made)."""
    url = storage_url(url)
    if not is_database(url):
        path = Path(url.removeprefix("journal:"))
        if not path.exists():
            check_writable(path.parent, "storage folder", "choose another --storage")
            return None
        if not os.access(path, os.R_OK | os.W_OK):
            raise StorageError(f"journal storage {path}: cannot read and write it; choose another --storage")
    return open_storage(url)


def resolve_from(spec: StudySpec, storage: optuna.storages.BaseStorage | None, url: str | None) -> StudySpec:
    if spec.from_ is None:
        return spec
    if storage is None:
        where = redact(storage_url(url))
        raise SpecError.at(spec.source, "from.study", f"no study named {spec.from_.study!r}: the storage "
                                                      f"{where} does not exist yet; run that phase first")
    return apply_from(spec, storage)


def check_cap(spec: StudySpec) -> None:
    """Refuse a space where no configuration fits the parameter cap."""
    count, point = smallest_param_count(spec)
    if count > spec.param_cap:
        smallest = ", ".join(f"{k}={v}" for k, v in point.items())
        raise SpecError.at(spec.source, "", f"no configuration in the space fits the {spec.param_cap:,} "
                                            f"parameter cap; the smallest is {count:,} ({smallest})")


def check_gpus(gpus: list[int]) -> None:
    import torch

    n = torch.cuda.device_count()
    bad = [g for g in gpus if g < 0 or g >= n]
    if bad:
        raise ConfigError(f"--gpus {','.join(map(str, gpus))}: GPU {bad[0]} does not exist "
                          f"({n} visible{': 0..' + str(n - 1) if n else ''})")


def check_runs(spec: StudySpec, url: str | None, device: str = "auto") -> None:
    """The device, data and cache of every value the space gives those fields; the runs folder."""
    for _, config in distinct_configs(spec, CHECKED_FIELDS):
        check_device(device if device != "auto" else config.device)
        check_data(config)
        check_cache(config)
    check_writable(runs_root(url), "runs folder", "set FACESEARCH_RUNS, or give --storage another folder")


def unrunnable_warning(spec: StudySpec) -> str | None:
    """One line when the space can draw a point that can never run, with the fix; None otherwise."""
    found = unrunnable_point(spec)
    if found is None:
        return None
    point, error = found
    drawn = ", ".join(f"{k}={v}" for k, v in point.items())
    return (f"warning: {spec.source or spec.name}: the space can draw {drawn}, which cannot run ({error}); "
            f"such trials are pruned as infeasible: add a when: condition or leave that value out to avoid "
            f"them")


def preflight_study(spec: StudySpec, url: str | None, device: str = "auto", gpus: list[int] | None = None,
                    warn: Callable[[str], None] | None = None) -> StudySpec:
    """Every check a study run or a worker needs, in the order cheapest first; the spec with its ``from:``
    resolved. ``warn`` (when given) gets the one-line warning of an unrunnable point."""
    spec = resolve_from(spec, check_storage(url), url)
    check_cap(spec)
    if gpus:
        check_gpus(gpus)
    check_runs(spec, url, device)
    if warn is not None and (line := unrunnable_warning(spec)):
        warn(line)
    return spec
