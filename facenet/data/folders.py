"""Identity folders, pair lists and the course's batch sampler (the decoded cache is ``facenet.data.cache``).

Everything per image is held in numpy arrays (paths in one UTF-8 buffer, labels, the epoch's
batch plan), never in one Python object per image: 500,000 images cost a few index arrays.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import DataError, unreadable
from .cache_formats import CachedImages

IMAGE_EXTS = (".jpg", ".jpeg", ".png")


# ---------------------------------------------------------------- listing
class Names(Sequence[str]):
    """Many strings in one UTF-8 buffer plus an offset array: no Python object per entry."""

    def __init__(self, items: Iterable[str] = ()):
        encoded = [s.encode() for s in items]
        self.blob = b"".join(encoded)
        self.offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum([len(e) for e in encoded], out=self.offsets[1:])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Names(self[j] for j in range(*i.indices(len(self))))
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.blob[self.offsets[i]:self.offsets[i + 1]].decode()

    def __iter__(self):
        blob, ends = self.blob, self.offsets.tolist()
        for a, b in zip(ends, ends[1:]):
            yield blob[a:b].decode()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and all(map(str.__eq__, self, other))

    def __repr__(self) -> str:
        head = ", ".join(repr(self[i]) for i in range(min(3, len(self))))
        return f"Names([{head}{', ...' if len(self) > 3 else ''}], n={len(self)})"


def _image_files(folder: str) -> list[str]:
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if os.path.splitext(e.name)[1].lower() in IMAGE_EXTS]
        for e in entries:
            if e.is_symlink():   # a link is followed at read time: a loop or a dangling one fails here, not there
                os.stat(e.path)
    except OSError as e:
        raise unreadable(e.filename or folder, e) from None
    return sorted(e.name for e in entries)


@dataclass
class IdentityFolder:
    """A training set: one sub-folder per identity; labels index the sorted names."""

    root: Path
    paths: Names                 # relative to root
    labels: np.ndarray           # int64, one per path
    classes: list[str]

    @classmethod
    def scan(cls, root: str | Path) -> "IdentityFolder":
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: training folder does not exist (expected one sub-folder per identity)")
        try:
            with os.scandir(root) as it:
                classes = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
        except OSError as e:
            raise unreadable(root, e) from None
        if not classes:
            raise DataError(f"{root}: no identity sub-folders found (expected e.g. {root}/id00012/00001.jpg)")
        counts = np.zeros(len(classes), np.int64)

        def paths():
            for label, name in enumerate(classes):
                files = _image_files(os.path.join(root, name))
                if not files:
                    raise DataError(f"{root / name}: identity folder holds no .jpg/.png images; "
                                    f"remove it or add images")
                counts[label] = len(files)
                yield from (f"{name}/{f}" for f in files)

        names = Names(paths())
        return cls(root, names, np.repeat(np.arange(len(classes), dtype=np.int64), counts), classes)


@dataclass
class PairList:
    """A verification list: ``label,path1,path2`` lines, paths relative to ``root``."""

    root: Path
    labels: np.ndarray           # int64 0/1
    left: np.ndarray             # index into ``images`` per pair
    right: np.ndarray
    images: Sequence[str]        # unique relative paths, each embedded once

    @property
    def lines(self) -> list[tuple[str, str, str]]:
        """The (label, path1, path2) of every pair, as in the file (built on demand, for writing scores)."""
        return [(str(l), self.images[a], self.images[b])
                for l, a, b in zip(self.labels.tolist(), self.left.tolist(), self.right.tolist())]

    def __len__(self) -> int:
        return len(self.labels)

    def check_both_labels(self, source: str | Path) -> "PairList":
        """An EER needs same-person (1) and different-person (0) pairs: a list with one kind is refused
        before training (else a whole epoch trains before the EER fails)."""
        same = int(self.labels.sum())
        if same in (0, len(self)):
            kind = "same-person (label 1)" if same else "different-person (label 0)"
            raise DataError(f"{source}: all {len(self)} pairs{' read' if len(self) else ''} are {kind}; a val list "
                            f"needs both labels to give an EER; add pairs of the other kind or choose another list")
        return self

    def duplicates(self) -> tuple[int, tuple[str, str] | None]:
        """(pairs that repeat an earlier pair of the same two images, in either order; the first such pair)."""
        key = np.minimum(self.left, self.right) * len(self.images) + np.maximum(self.left, self.right)
        _, first = np.unique(key, return_index=True)
        repeated = np.setdiff1d(np.arange(len(key)), first)
        if not len(repeated):
            return 0, None
        i = int(repeated[0])
        return len(repeated), (self.images[int(self.left[i])], self.images[int(self.right[i])])

    @classmethod
    def read(cls, root: str | Path, pair_file: str | Path, limit: int = 0) -> "PairList":
        root = Path(root)
        pair_file = Path(pair_file)
        if not pair_file.is_absolute():
            pair_file = root / pair_file
        if not root.is_dir():
            raise DataError(f"{root}: pair-list folder does not exist")
        if not pair_file.is_file():
            raise DataError(f"{pair_file}: pair list not found (expected lines 'label,path1,path2')")
        lines, index = [], {}
        resolved_root = root.resolve()
        for n, line in enumerate(pair_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 3:
                raise DataError(f"{pair_file}:{n}: malformed line {line!r}; expected 'label,path1,path2'")
            if parts[0] not in ("0", "1"):
                raise DataError(f"{pair_file}:{n}: label {parts[0]!r} must be 0 or 1")
            for p in parts[1:]:
                try:
                    full = (root / p).resolve()
                except (OSError, RuntimeError) as e:   # 3.11 raises RuntimeError on a symlink loop
                    raise DataError(f"{pair_file}:{n}: image {root / p}: cannot read it ({e}); fix or remove it") \
                        from None
                if not full.is_relative_to(resolved_root):
                    raise DataError(f"{pair_file}:{n}: {p!r} lies outside {root}; paths must be relative to it")
                if p not in index:
                    if not full.is_file():
                        raise DataError(f"{pair_file}:{n}: image {root / p} not found")
                    index[p] = len(index)
            lines.append((parts[0], parts[1], parts[2]))
            if limit and len(lines) >= limit:
                break
        if not lines:
            raise DataError(f"{pair_file}: pair list has no lines")
        return cls(
            root=root,
            labels=np.array([int(l) for l, _, _ in lines], dtype=np.int64),
            left=np.array([index[a] for _, a, _ in lines], dtype=np.int64),
            right=np.array([index[b] for _, _, b in lines], dtype=np.int64),
            images=Names(index),
        )


def readable(images: CachedImages, folder: IdentityFolder) -> np.ndarray:
    """Training skips unreadable images (with a warning each): the indices of the readable ones."""
    keep = np.ones(len(folder.paths), dtype=bool)
    for i in images.bad:
        warnings.warn(f"skipping unreadable image {folder.root / folder.paths[i]}", stacklevel=2)
        keep[i] = False
    return np.flatnonzero(keep)
