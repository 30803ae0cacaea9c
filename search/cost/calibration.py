"""The calibration table: measured training and evaluation speed per device and per ``speed_key``.

Kept in the study storage as a study of its own (``record.CALIBRATION_STUDY``), one trial per
measured point, so every worker of every study on that storage reuses it; a point nobody has
measured is probed once, by the first worker to claim it (the lowest trial number wins, the
others wait for its result), whatever machine the workers are on. ``facesearch calibrate --out``
also writes the table as a JSON file that can be carried to a machine without the GPUs
(``facesearch plan --calibration FILE``), with the data sizes it saw.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from facenet.config import TrainConfig
from facenet.errors import UserError

from ..record import CALIBRATION_STUDY, FAIL_REASON, SPEED, SPEED_KEY, WORKER, WorkerId

FORMAT = 1
ARCH_FIELDS = ("model", "width", "depth", "block")
UNLABELED_GRACE = 60.0   # seconds a fresh claim may go without its key before others stop waiting for it


class CalibrationError(UserError):
    """A calibration file that cannot be read, or a point with no measurement to go by."""


def ident(device: str, key: dict[str, Any]) -> str:
    return json.dumps({"device": device, **key}, sort_keys=True)


@dataclass(frozen=True)
class Entry:
    device: str
    key: dict[str, Any]
    speed: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "key": self.key, "speed": self.speed}


def _arch(key: dict[str, Any]) -> tuple:
    return tuple(key.get(f) for f in ARCH_FIELDS)


class CalibrationTable:
    """Entries by (device, key); the last measurement of a point wins."""

    def __init__(self, entries: list[Entry] | None = None, census: dict[str, dict] | None = None):
        self.entries: dict[str, Entry] = {}
        for e in entries or []:
            self.add(e)
        self.census = dict(census or {})

    def add(self, entry: Entry) -> None:
        self.entries[ident(entry.device, entry.key)] = entry

    def devices(self) -> list[str]:
        return sorted({e.device for e in self.entries.values()})

    def exact(self, device: str, key: dict[str, Any]) -> dict[str, Any] | None:
        e = self.entries.get(ident(device, key))
        return e.speed if e else None

    def lookup(self, device: str, key: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
        """The point's speed, else the nearest measured point of the same network on ``device`` with its
        rates scaled by the pixels per image; (speed, how it was obtained) or None."""
        if (speed := self.exact(device, key)) is not None:
            return speed, "measured"
        same = [e for e in self.entries.values() if e.device == device and _arch(e.key) == _arch(key)]
        if not same:
            return None

        def distance(e: Entry) -> float:
            return (4 * abs(math.log(e.key["resolution"] / key["resolution"]))
                    + abs(math.log(e.key["batch_images"] / key["batch_images"]))
                    + 0.1 * abs(math.log(e.key["n_out"] / key["n_out"])))

        near = min(same, key=distance)
        pixels = (near.key["resolution"] / key["resolution"]) ** 2
        speed = {**near.speed, "train_images_per_s": near.speed["train_images_per_s"] * pixels,
                 "eval_images_per_s": near.speed["eval_images_per_s"] * pixels}
        moved = ", ".join(f"{f} {near.key[f]}" for f in ("resolution", "batch_images", "n_out")
                          if near.key[f] != key[f])
        return speed, f"nearest ({moved})"

    # -------------------------------------------------------------- the file
    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"facesearch_calibration": FORMAT, "entries": [e.to_dict() for e in self.entries.values()],
                "data": self.census}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(body, indent=1, sort_keys=True))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "CalibrationTable":
        path = Path(path)
        if not path.is_file():
            raise CalibrationError(f"{path}: calibration file not found; "
                                   f"write one with facesearch calibrate --out")
        try:
            body = json.loads(path.read_text())
            if body.get("facesearch_calibration") != FORMAT:
                raise ValueError("not a facesearch calibration file")
            entries = [Entry(e["device"], e["key"], e["speed"]) for e in body["entries"]]
            return cls(entries, body.get("data", {}))   # an older file's "param_counts" is not needed
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CalibrationError(f"{path}: not a facesearch calibration file ({e}); "
                                   f"write one with facesearch calibrate --out") from None


def calibration_study(storage: optuna.storages.BaseStorage) -> optuna.Study:
    return optuna.create_study(study_name=CALIBRATION_STUDY, storage=storage, load_if_exists=True,
                               direction="maximize")


def stored_table(storage: optuna.storages.BaseStorage) -> CalibrationTable:
    """Every measurement in the storage (empty when nothing was calibrated there)."""
    if CALIBRATION_STUDY not in optuna.get_all_study_names(storage):
        return CalibrationTable()
    study = optuna.load_study(study_name=CALIBRATION_STUDY, storage=storage)
    table = CalibrationTable()
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if SPEED in t.user_attrs:
            point = json.loads(t.user_attrs[SPEED_KEY])
            device = point.pop("device")
            table.add(Entry(device, point, t.user_attrs[SPEED]))
    return table


def _probe(config: TrainConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """A worker's probe on first use: short (half a second timed), since recent trials correct its pace."""
    from facenet.probe import probe

    return probe(config, log=log, min_seconds=0.5).to_dict()


class SharedCalibration:
    """A worker's view of the storage's table: ``speed_for(config)`` measures a point once across workers."""

    def __init__(self, storage: optuna.storages.BaseStorage, log: Callable[[str], None] = print,
                 probe: Callable[[TrainConfig, Callable[[str], None]], dict] = _probe, poll: float = 1.0,
                 wait_limit: float = 1800.0):
        self.storage, self.log, self.probe, self.poll, self.wait_limit = storage, log, probe, poll, wait_limit
        self.known: dict[str, dict[str, Any]] = {}
        self.me = str(WorkerId.me())
        self._study: optuna.Study | None = None

    def device(self, config: TrainConfig) -> str:
        from facenet.probe import device_label
        from facenet.train import resolve_device

        return device_label(resolve_device(config.device))

    def point(self, config: TrainConfig) -> str:
        """The calibration point of ``config`` on this device (device and speed key)."""
        from facenet.probe import speed_key

        return ident(self.device(config), speed_key(config))

    def speed_for(self, config: TrainConfig) -> tuple[dict[str, Any], float]:
        """(speed of ``config``'s point on this device, seconds this call spent probing it)."""
        point = self.point(config)
        if point in self.known:
            return self.known[point], 0.0
        if self._study is None:
            self._study = calibration_study(self.storage)
        speed, spent = self._claim_or_wait(self._study, point, config)
        self.known[point] = speed
        return speed, spent

    def _claim_or_wait(self, study: optuna.Study, point: str, config: TrainConfig) -> tuple[dict, float]:
        mine: optuna.Trial | None = None   # our claim
        waiting_for: int | None = None
        deadline = time.time() + self.wait_limit
        while True:
            trials = study.get_trials(deepcopy=False)
            entries = [t for t in trials if t.user_attrs.get(SPEED_KEY) == point]
            done = [t for t in entries if t.state == TrialState.COMPLETE and SPEED in t.user_attrs]
            if done:
                if mine is not None:
                    self._give_up(study, mine.number, "measured by another worker meanwhile")
                return done[-1].user_attrs[SPEED], 0.0
            claims = sorted(t.number for t in entries if t.state == TrialState.RUNNING)
            if mine is None and not claims:
                mine = study.ask()
                mine.set_user_attr(WORKER, self.me)
                mine.set_user_attr(SPEED_KEY, point)
                continue
            if mine is not None and mine.number not in claims:   # given up by a worker that thought us gone
                mine = None
                continue
            if mine is not None and claims[0] == mine.number:
                if self._unlabeled_before(trials, mine.number):   # an earlier claim, its key not written yet
                    time.sleep(min(self.poll, 0.2))
                    continue
                return self._measure(study, mine, config)
            if mine is not None:
                self._give_up(study, mine.number, f"trial {claims[0]} measures this point")
                mine = None
            owner = next(t for t in entries if t.number == claims[0])
            if owner.number != waiting_for:
                waiting_for = owner.number
                who = owner.user_attrs.get(WORKER, "another worker")
                self.log(f"waiting for {who} to measure this point")
            if self._dead(owner) or time.time() > deadline:
                why = "its worker is gone" if self._dead(owner) else "took too long"
                self._give_up(study, owner.number, why)
                deadline = time.time() + self.wait_limit
                continue
            time.sleep(self.poll)

    def _unlabeled_before(self, trials: list, mine: int) -> bool:
        now = dt.datetime.now()
        return any(t.state == TrialState.RUNNING and t.number < mine and SPEED_KEY not in t.user_attrs
                   and t.datetime_start and (now - t.datetime_start).total_seconds() < UNLABELED_GRACE
                   for t in trials)

    def _measure(self, study: optuna.Study, trial: optuna.Trial, config: TrainConfig) -> tuple[dict, float]:
        start = time.perf_counter()
        try:
            speed = self.probe(config, self.log)
        except BaseException as e:
            try:
                self._give_up(study, trial.number, f"probe failed: {e!r}")
            except Exception:   # the probe's own error (or the signal) is what the caller must see
                pass
            raise
        trial.set_user_attr(SPEED, speed)
        study.tell(trial, speed["train_images_per_s"])
        return speed, time.perf_counter() - start

    def _give_up(self, study: optuna.Study, number: int, reason: str) -> None:
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
        try:
            study._storage.set_trial_user_attr(trial_id, FAIL_REASON, reason)
            study.tell(number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):   # finished meanwhile (another worker gave it up first)
            pass

    @staticmethod
    def _dead(t) -> bool:
        owner = WorkerId.parse(t.user_attrs.get(WORKER))
        return owner is not None and owner.gone
