"""How much data a trial reads: images per identity of its training folder, and the val images it embeds.

Counted from the folders when they are here; on a machine without the data (a laptop planning for
a cluster) from a census carried in the calibration file or given as ``--data-size train1=2882x174``
(identities x images each) and ``--data-size val=50000`` (val images).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facenet.config import TrainConfig
from facenet.errors import UserError


class DataSizeError(UserError):
    """A data set whose size is unknown here."""


@dataclass(frozen=True)
class TrainSize:
    counts: tuple[int, ...]          # images of each identity, in label order

    @property
    def labels(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.counts)), self.counts)

    def to_dict(self) -> dict[str, Any]:
        return {"counts": list(self.counts)}


@dataclass(frozen=True)
class ValSize:
    images: int                      # unique images of the whole list
    pairs: int

    def images_for(self, max_pairs: int) -> int:
        """Images embedded with ``max_val_pairs`` (pro rata when only the census is known)."""
        if not max_pairs or max_pairs >= self.pairs:
            return self.images
        return max(1, round(self.images * max_pairs / self.pairs))

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "pairs": self.pairs}


_SIZE = re.compile(r"(?P<name>[^=]+)=(?:(?P<ids>\d+)x(?P<each>\d+)|(?P<val>\d+))")


class DataSizes:
    """Sizes by folder, measured once per process; ``census`` holds what was measured elsewhere,
    keyed by the folder path as the spec names it (a folder's own name also matches)."""

    def __init__(self, census: dict[str, dict] | None = None):
        self.census = dict(census or {})
        self._train: dict[str, TrainSize] = {}
        self._val: dict[tuple[str, str, int], tuple[ValSize, int]] = {}

    def add_override(self, text: str) -> None:
        """``train1=2882x174`` (identities x images each) or ``val=50000`` (images of the val list)."""
        m = _SIZE.fullmatch(text.strip())
        if not m:
            raise DataSizeError(f"--data-size {text!r}: expected NAME=IDENTITIESxIMAGES (train1=2882x174) "
                                f"or NAME=IMAGES for a val folder (val=50000)")
        name = m["name"].strip()
        if m["val"]:
            self.census[name] = {"images": int(m["val"]), "pairs": int(m["val"])}
        else:
            self.census[name] = {"counts": [int(m["each"])] * int(m["ids"])}

    def _known(self, path: str, what: str) -> dict | None:
        for key in (path, str(Path(path).resolve()), Path(path).name):
            if key in self.census and what in self.census[key]:
                return self.census[key]
        return None

    def train(self, path: str) -> TrainSize:
        if path not in self._train:
            if Path(path).is_dir():
                from facenet.data.folders import IdentityFolder

                labels = IdentityFolder.scan(path).labels
                self._train[path] = TrainSize(tuple(np.bincount(labels).tolist()))
            elif (known := self._known(path, "counts")) is not None:
                self._train[path] = TrainSize(tuple(known["counts"]))
            else:
                raise DataSizeError(f"training folder {path} is not here and its size is unknown; plan where "
                                    f"the data is, carry a calibration made there, or give "
                                    f"--data-size {Path(path).name}=IDENTITIESxIMAGES")
        return self._train[path]

    def val_images(self, config: TrainConfig) -> int:
        key = (config.val_path, config.val_list, config.max_val_pairs)
        if key not in self._val:
            pair_file = Path(config.val_list) if Path(config.val_list).is_absolute() else \
                Path(config.val_path) / config.val_list
            if pair_file.is_file():
                from facenet.data.folders import PairList

                pairs = PairList.read(config.val_path, config.val_list, config.max_val_pairs)
                self._val[key] = (ValSize(len(pairs.images), len(pairs)), 0)
            elif (known := self._known(config.val_path, "images")) is not None:
                self._val[key] = (ValSize(known["images"], known["pairs"]), config.max_val_pairs)
            else:
                raise DataSizeError(f"val list {pair_file} is not here and its size is unknown; give "
                                    f"--data-size {Path(config.val_path).name}=IMAGES")
        size, max_pairs = self._val[key]
        return size.images_for(max_pairs)

    def measured(self) -> dict[str, dict]:
        """What this process counted, for the calibration file's census."""
        out = {path: size.to_dict() for path, size in self._train.items()}
        for (path, _, max_pairs), (size, _) in self._val.items():
            if not max_pairs:
                out.setdefault(path, {}).update(size.to_dict())
        return out
