"""Identity folders, pair lists, the decoded-image cache, and the course's batch sampler.

Images are decoded and resized once per (dataset, size) into a memory-mapped uint8 array
(N, S, S, 3) that every later run, and every concurrent worker process, reads directly.
``facenet.loader`` cuts each image's random crop (and mirror) out of it, on uint8.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import DataError

IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def cache_size(resolution: int) -> int:
    """Side of the cached images: the course's Resize(256) before a 224 crop, scaled."""
    return int(round(resolution * 256 / 224))


# ---------------------------------------------------------------- listing
@dataclass
class IdentityFolder:
    """A training set: one sub-folder per identity; labels index the sorted names."""

    root: Path
    paths: list[str]             # relative to root
    labels: np.ndarray           # int64, one per path
    classes: list[str]

    @classmethod
    def scan(cls, root: str | Path) -> "IdentityFolder":
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: training folder does not exist (expected one sub-folder per identity)")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise DataError(f"{root}: no identity sub-folders found (expected e.g. {root}/id00012/00001.jpg)")
        paths, labels = [], []
        for label, name in enumerate(classes):
            files = sorted(f.name for f in (root / name).iterdir() if f.suffix.lower() in IMAGE_EXTS)
            if not files:
                raise DataError(f"{root / name}: identity folder holds no .jpg/.png images; remove it or add images")
            paths += [f"{name}/{f}" for f in files]
            labels += [label] * len(files)
        return cls(root, paths, np.asarray(labels, dtype=np.int64), classes)


@dataclass
class PairList:
    """A verification list: ``label,path1,path2`` lines, paths relative to ``root``."""

    root: Path
    labels: np.ndarray           # int64 0/1
    left: np.ndarray             # index into ``images`` per pair
    right: np.ndarray
    images: list[str]            # unique relative paths, each embedded once
    lines: list[tuple[str, str, str]] = field(repr=False, default_factory=list)

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
                full = (root / p).resolve()
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
            images=list(index),
            lines=lines,
        )


# ---------------------------------------------------------------- decoded-image cache
def _decode(path: Path, size: int) -> np.ndarray | None:
    """Decode, resize the shorter side to ``size`` and centre-crop square; None if unreadable."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None


@dataclass
class DecodedImages:
    """Images of one list at one size, as a read-only memmap, plus the ones that failed to decode."""

    array: np.ndarray            # (N, S, S, 3) uint8 memmap
    bad: list[int]               # indices of unreadable files
    path: Path

    def __len__(self) -> int:
        return len(self.array)


def default_cache_dir(root: Path) -> Path:
    return Path(os.environ.get("FACESEARCH_CACHE", "")) if os.environ.get("FACESEARCH_CACHE") else root / ".facesearch-cache"


def load_images(root: str | Path, rel_paths: list[str], size: int, cache_dir: str | Path = "",
                progress: bool = False) -> DecodedImages:
    """The decoded cache of ``rel_paths`` under ``root`` at ``size``; built once, then reused.

    The file name carries a hash of the list and of every file's size and mtime, so a
    changed file means a new cache (older ones of the same list and size are deleted).
    A lock file makes concurrent workers wait for one builder instead of all decoding.
    """
    root = Path(root)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(root)
    list_key = hashlib.sha1(("\n".join(rel_paths) + f"|{root.resolve()}").encode()).hexdigest()[:12]
    h = hashlib.sha1()
    for p in rel_paths:
        st = (root / p).stat()
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    stem = f"{list_key}-{size}"
    final = cache_dir / f"{stem}-{h.hexdigest()[:12]}.npy"
    meta = final.with_suffix(".json")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"{stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # other processes wait here while one builds
        if not (final.exists() and meta.exists()):
            for old in cache_dir.glob(f"{stem}-*"):
                old.unlink(missing_ok=True)
            bad = _build(root, rel_paths, size, final, progress)
            tmp = meta.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"bad": bad, "n": len(rel_paths), "size": size, "root": str(root)}))
            os.replace(tmp, meta)
    bad = json.loads(meta.read_text())["bad"]
    return DecodedImages(np.load(final, mmap_mode="r"), bad, final)


def _build(root: Path, rel_paths: list[str], size: int, final: Path, progress: bool) -> list[int]:
    tmp = final.with_name(final.name + f".tmp{os.getpid()}.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(rel_paths), size, size, 3))
    bad = []

    def work(i: int) -> None:
        img = _decode(root / rel_paths[i], size)
        if img is None:
            bad.append(i)
            out[i] = 0
        else:
            out[i] = img

    indices = range(len(rel_paths))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:   # PIL decodes without the GIL
        it = pool.map(work, indices)
        if progress and len(rel_paths) > 500:
            from rich.progress import track
            it = track(it, total=len(rel_paths), description=f"decoding {root.name} at {size}px", transient=True)
        for _ in it:
            pass
    out.flush()
    del out
    os.replace(tmp, final)
    return sorted(bad)


# ---------------------------------------------------------------- sampler
class Batch(NamedTuple):
    """What the sampler hands the loader: dataset positions, and the seed of their crops and flips."""

    indices: np.ndarray
    seed: tuple[int, ...]        # (run seed, epoch, batch number): reproducible in any worker, on resume too


class ClassBalancedSampler(torch.utils.data.Sampler):
    """The course's sampler: each batch holds ``batch_size`` identities x ``n_per_class`` images.

    Per epoch every identity contributes at most ``max_img_per_cls`` images, cut into groups
    of ``n_per_class``; groups are shuffled and placed so no identity appears twice in a batch
    (a group that would repeat an identity is dropped, as the course trainer does). Yields
    one ``Batch`` per batch; deterministic for (seed, epoch).
    """

    def __init__(self, labels: np.ndarray, batch_size: int, n_per_class: int, max_img_per_cls: int,
                 seed: int = 0, indices: np.ndarray | None = None):
        """``indices``: the dataset positions to draw from (default all), e.g. without unreadable files."""
        indices = np.arange(len(labels)) if indices is None else np.asarray(indices)
        self.labels = np.asarray(labels)[indices]
        self.n_classes = int(np.asarray(labels).max()) + 1 if len(labels) else 0
        self.batch_size = batch_size
        self.n_per_class = n_per_class
        self.max_img_per_cls = max_img_per_cls
        self.seed = seed
        self.epoch = 0
        order = np.argsort(self.labels, kind="stable")
        bounds = np.searchsorted(self.labels[order], np.arange(self.n_classes + 1))
        self.by_class = [indices[order[bounds[c]:bounds[c + 1]]] for c in range(self.n_classes)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _draw(self, keep_groups: bool = True) -> tuple[list[np.ndarray], list[int], np.ndarray]:
        """This epoch's groups (when kept), each group's identity, and the order groups are dealt in."""
        rng = np.random.default_rng([self.seed, self.epoch])
        k, groups, owner = self.n_per_class, [], []
        for c, idx in enumerate(self.by_class):
            idx = rng.permutation(idx)[: self.max_img_per_cls]
            n = len(idx) // k
            if keep_groups:
                groups += [idx[i * k:(i + 1) * k] for i in range(n)]
            owner += [c] * n
        return groups, owner, rng.permutation(len(owner))

    def batches(self) -> list[np.ndarray]:
        groups, owner, order = self._draw()
        batches, current, seen = [], [], set()
        for g in order:
            c = owner[g]
            if c in seen:
                continue   # the course drops a group whose identity is already in the batch
            current.append(groups[g])
            seen.add(c)
            if len(current) == self.batch_size:
                batches.append(np.concatenate(current))
                current, seen = [], set()
        return batches   # an incomplete last batch is dropped

    def __iter__(self):
        for i, idx in enumerate(self.batches()):
            yield Batch(idx, (self.seed, self.epoch, i))

    def __len__(self) -> int:
        """``len(self.batches())`` without building them: the same deal, counting identities only
        (a planner asks it for half a million images many times)."""
        _, owner, order = self._draw(keep_groups=False)
        owners, k = np.asarray(owner, dtype=np.int64)[order].tolist(), self.batch_size
        count, i, n = 0, 0, len(owners)
        while i + k <= n:
            seen = set(owners[i:i + k])   # the next k groups, a repeated identity counted once...
            i += k
            while len(seen) < k and i < n:   # ...and one more group per repeat until k identities
                seen.add(owners[i])
                i += 1
            count += len(seen) == k
        return count


def readable(images: DecodedImages, folder: IdentityFolder) -> np.ndarray:
    """Training skips unreadable images (with a warning each): the indices of the readable ones."""
    keep = np.ones(len(folder.paths), dtype=bool)
    for i in images.bad:
        warnings.warn(f"skipping unreadable image {folder.root / folder.paths[i]}", stacklevel=2)
        keep[i] = False
    return np.flatnonzero(keep)


# ---------------------------------------------------------------- the training sampler of a config
SUBSET_SEED = 20240601   # one fixed draw: every trial of every study sees the same identities


def chosen_identities(n_classes: int, max_identities: int) -> np.ndarray:
    """The identities a run with ``max_identities`` trains on (sorted; all when 0 or >= n_classes).

    A fixed permutation, independent of the run's seed, so proxy trials compare on the same
    people, and a smaller subset is contained in every larger one.
    """
    if not max_identities or max_identities >= n_classes:
        return np.arange(n_classes)
    return np.sort(np.random.default_rng(SUBSET_SEED).permutation(n_classes)[:max_identities])


class TrainingSet(NamedTuple):
    """What a run trains on: labels renumbered 0..n_classes-1 over the chosen identities, and its sampler."""

    labels: np.ndarray           # per dataset position; -1 for identities left out (never sampled)
    n_classes: int
    sampler: ClassBalancedSampler

    @property
    def images_per_epoch(self) -> int:
        """Images one epoch trains on: the sampler's batches x identities x images each."""
        return len(self.sampler) * self.sampler.batch_size * self.sampler.n_per_class


def training_set(labels: np.ndarray, batch_size: int, n_per_class: int, max_img_per_cls: int, seed: int = 0,
                 max_identities: int = 0, indices: np.ndarray | None = None) -> TrainingSet:
    """The course sampler over the chosen identities (``indices``: the usable positions, default all);
    a batch never holds more identities than there are."""
    labels = np.asarray(labels)
    n_all = int(labels.max()) + 1 if len(labels) else 0
    chosen = chosen_identities(n_all, max_identities)
    renumber = np.full(n_all, -1, dtype=np.int64)
    renumber[chosen] = np.arange(len(chosen))
    labels = renumber[labels]
    indices = np.arange(len(labels)) if indices is None else np.asarray(indices)
    indices = indices[labels[indices] >= 0]
    batch = min(batch_size, len(chosen))
    sampler = ClassBalancedSampler(labels, batch, n_per_class, max_img_per_cls, seed, indices)
    return TrainingSet(labels, len(chosen), sampler)
