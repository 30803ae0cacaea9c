"""``facesearch calibrate``: probe every network and batch a set of studies can draw, on this machine.

The points are the distinct ``facenet.probe.speed_key`` values of each phase's space (with what its
``from:`` phases may hand it), those that cannot train left out (``facenet.runnable.feasibility``).
Measurements go into the storage's calibration (points already measured on this device are reused, as
workers would) and, with ``--out``, a JSON file with the data sizes seen, to carry to a machine without
the GPUs or data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import optuna

from facenet.config import TrainConfig

from ..spec.space import combinations
from .calibration import CalibrationTable, SharedCalibration, stored_table
from .datasize import DataSizeError, DataSizes
from .plan import chained, merged

SPEED_FIELDS = ("model", "width", "depth", "block", "n_out", "resolution", "batch_size", "n_per_class")
KEY_SETS = ("all", "shapes")


def probe_points(paths: list[Path], keys: str = "all", device: str = "auto",
                 data: Path | None = None) -> list[TrainConfig]:
    """One config per distinct speed point of the phases that can train (``shapes``: one per network and
    resolution, at its smallest batch), on ``data`` instead of the specs' folders when given."""
    from facenet.probe import speed_key
    from facenet.runnable import feasibility

    points: dict[str, TrainConfig] = {}
    for spec, inherited in chained(paths):
        space, fixed = merged(spec, inherited)
        base = spec.base_config().replace(**{k: v for k, v in fixed.items() if k not in spec.fixed})
        for point in combinations(space, fixed, SPEED_FIELDS):
            config = _on(base.replace(**point, device=device), data)
            if not feasibility(config, spec.param_cap).trains:   # never trained: nothing to measure
                continue
            key = speed_key(config)
            shape = {k: v for k, v in key.items() if k not in ("batch_images", "n_out")}
            group = str(shape if keys == "shapes" else key)
            held = points.get(group)
            if held is None or (keys == "shapes" and _smaller(key, speed_key(held))):
                points[group] = config
    return list(points.values())


def _smaller(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["batch_images"], a["n_out"]) < (b["batch_images"], b["n_out"])


def _on(config: TrainConfig, data: Path | None) -> TrainConfig:
    """The config reading ``data`` (same training split name when it has one, else train1)."""
    if data is None:
        return config
    split = Path(config.train_path).name
    train = data / split if (data / split).is_dir() else data / "train1"
    return config.replace(train_path=str(train), val_path=str(data / "val"), val_list="val_pairs.csv",
                          initial_model="")


def census(paths: list[Path]) -> dict[str, dict]:
    """Sizes of the specs' own data folders that are here (for planning elsewhere)."""
    sizes = DataSizes()
    for spec, _ in chained(paths):
        config = spec.base_config()
        try:
            sizes.train(config.train_path)
            sizes.val_images(config.replace(max_val_pairs=0))
        except DataSizeError:
            continue
    return sizes.measured()


def calibrate(paths: list[Path], storage: optuna.storages.BaseStorage, *, device: str = "auto",
              out: Path | None = None, data: Path | None = None, keys: str = "all", steps: int = 5,
              warmup: int = 2, eval_images: int = 512, log: Callable[[str], None] = print,
              min_seconds: float = 1.0) -> CalibrationTable:
    """Measure what is not measured yet on this device; this device's table (also written to ``out``)."""
    from facenet.probe import probe

    def measure(config: TrainConfig, say: Callable[[str], None]) -> dict:
        return probe(config, steps=steps, warmup=warmup, eval_images=eval_images, log=say,
                     min_seconds=min_seconds).to_dict()

    shared = SharedCalibration(storage, log, probe=measure)
    configs = probe_points(paths, keys, device, data)
    log(f"{len(configs)} point(s) to calibrate on {shared.device(configs[0]) if configs else device}")
    labels = set()
    for i, config in enumerate(configs, 1):
        _, spent = shared.speed_for(config)
        labels.add(shared.device(config))
        if not spent:
            log(f"[{i}/{len(configs)}] already calibrated")
    whole = stored_table(storage)
    table = CalibrationTable([e for e in whole.entries.values() if e.device in labels], census(paths))
    if out is not None:
        table.save(out)
        log(f"wrote {out}: {len(table.entries)} point(s), data sizes of {len(table.census)} folder(s)")
    return table
