"""The decoded-image cache: each image of a list decoded and resized once, stored in one of two formats.

- ``raw``: a memmapped uint8 array (N, S, S, 3), the fastest to read; S * S * 3 bytes an image
  (196,608 at the 224 px pipeline's 256 px resize: 500,000 images make 98 GB).
- ``jpeg``: the same resized images JPEG-encoded into one file plus an offset index, about a
  tenth of the bytes; the loader threads decode each image whole, then cut the same window the
  raw format would give (on CUDA a batch is decoded on the GPU instead, see ``BatchedJpeg``).

``auto`` takes raw when its bytes fit the cache budget (``cache_budget_gb``, else
``$FACESEARCH_CACHE_BUDGET``, else half the free disk) and jpeg otherwise. Caches live outside
the data set, which is often a read-only share: ``cache_dir``, else ``$FACESEARCH_CACHE``, else
``$XDG_CACHE_HOME/facesearch`` or ``~/.cache/facesearch``, one folder per data set named after
its absolute path. Every file of a cache entry carries a hash of the list and of each file's
size and mtime, so a changed data set gets a new entry. A build decodes in threads chunk by
chunk and records each finished chunk, so a killed build resumes where it stopped; only the
metadata file, renamed into place last, marks an entry complete.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import DataError
from ..registry import Registry
from ..units import fmt_duration, parse_size
from .cache_entry import Entry, JpegSink, RawSink, Sink, _unlink, _write_atomic, decode_resized, encode_jpeg, entry_for
from .cache_formats import CachedImages, PackedJpeg, RawImages

CHUNK = 512                  # images per build step: the unit of parallel work, of progress and of resume
BUDGET_ENV = "FACESEARCH_CACHE_BUDGET"
BUDGET_SHARE_OF_FREE = 0.5   # the default budget: half the free disk of the cache folder
LOG_EVERY_S = 30.0           # progress lines when there is no terminal
_FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


# ---------------------------------------------------------------- where
def default_cache_dir(root: str | Path) -> Path:
    """``$FACESEARCH_CACHE``, else ``<user cache>/facesearch/<dataset name>-<hash of its absolute path>``."""
    if os.environ.get("FACESEARCH_CACHE"):
        return Path(os.environ["FACESEARCH_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"   # XDG: relative values are ignored
    resolved = Path(root).resolve()
    return base / "facesearch" / f"{resolved.name}-{hashlib.sha1(str(resolved).encode()).hexdigest()[:12]}"


def cache_folder(root: str | Path, cache_dir: str | Path = "") -> Path:
    return Path(cache_dir) if str(cache_dir) else default_cache_dir(root)


@dataclass(frozen=True)
class CacheSpec:
    """How a run caches decoded images, passed whole to everything that opens images (training, validation,
    probes, scoring, checks), so none of them falls back to ``auto`` and half the free disk unasked."""
    dir: str | Path = ""    # "" -> $FACESEARCH_CACHE, else the user cache (``default_cache_dir``)
    format: str = "auto"    # raw | jpeg | auto
    budget_gb: float = 0.0  # 0 -> $FACESEARCH_CACHE_BUDGET, else half the free disk

    @classmethod
    def of(cls, config) -> "CacheSpec":
        """A ``TrainConfig``'s cache settings."""
        return cls(str(config.cache_dir), config.cache_format, config.cache_budget_gb)

    def folder(self, root: str | Path) -> Path:
        return cache_folder(root, self.dir)

    def budget_bytes(self, folder: Path) -> float:
        return budget_bytes(folder, self.budget_gb)

    def choose(self, n: int, size: int, folder: Path) -> str:
        """The format a new cache of ``n`` images at ``size`` takes."""
        return choose_format(self.format, n, size, folder, self.budget_gb)


def require_writable(folder: Path) -> None:
    """Create ``folder`` if needed and fail with one line unless this process can write in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise DataError(f"decoded-image cache folder {folder} is not writable ({e.strerror or e}); "
                        f"set cache_dir or FACESEARCH_CACHE to a writable folder") from None




def cache_size(resolution: int) -> int:
    """Side of the cached images: the course's Resize(256) before a 224 crop, scaled."""
    return int(round(resolution * 256 / 224))


# ---------------------------------------------------------------- the formats
@dataclass(frozen=True)
class Format:
    name: str
    sink: Callable[[Entry, Path, Sequence[str], int], Sink]
    open: Callable[[Entry, dict], CachedImages]
    parts: tuple[str, ...]       # files an interrupted build leaves, to resume from
    bytes_per_image: Callable[[int, Sequence[Path]], float]   # (size, sample of source files)


def _open_raw(entry: Entry, meta: dict) -> CachedImages:
    path = entry.file("raw", "npy")
    return RawImages(np.load(path, mmap_mode="r"), meta["bad"], path)


def _open_jpeg(entry: Entry, meta: dict) -> CachedImages:
    path = entry.file("jpeg", "bin")
    offsets = np.load(entry.file("jpeg", "idx.npy"), mmap_mode="r")
    data = np.memmap(path, np.uint8, mode="r") if offsets[-1] else np.zeros(0, np.uint8)
    return PackedJpeg(data, offsets, meta["size"], meta["bad"], path)


def jpeg_bytes_per_image(size: int, sample: Sequence[Path]) -> float:
    """Mean encoded size over ``sample`` (readable files only); nan without any."""
    sizes = [len(encode_jpeg(im)) for im in (decode_resized(p, size) for p in sample) if im is not None]
    return float(np.mean(sizes)) if sizes else float("nan")


FORMATS: Registry[Format] = Registry("cache format")
FORMATS.register("raw")(Format("raw", RawSink, _open_raw, ("npy.part", "progress"),
                               lambda size, sample: size * size * 3))
FORMATS.register("jpeg")(Format("jpeg", JpegSink, _open_jpeg, ("bin.part", "len.part"), jpeg_bytes_per_image))


def check_format(fmt: str) -> str:
    if fmt != "auto":
        FORMATS.get(fmt)   # an unknown name fails with the known ones
    return fmt


# ---------------------------------------------------------------- budget and choice
def free_bytes(folder: Path) -> int:
    """Free space where ``folder`` is (or would be created)."""
    for p in (folder, *folder.parents):
        if p.exists():
            return shutil.disk_usage(p).free
    return 0


def budget_bytes(folder: Path, budget_gb: float = 0.0) -> float:
    """The most one cache entry may take: ``budget_gb``, else ``$FACESEARCH_CACHE_BUDGET``, else half
    the free disk (a quota is invisible to the free-space figure: set the budget then)."""
    if budget_gb > 0:
        return budget_gb * 1e9
    if os.environ.get(BUDGET_ENV, "").strip():
        return parse_size(os.environ[BUDGET_ENV], BUDGET_ENV)
    return BUDGET_SHARE_OF_FREE * free_bytes(folder)


def choose_format(fmt: str, n: int, size: int, folder: Path, budget_gb: float = 0.0) -> str:
    """``fmt`` unless 'auto'; auto: raw when its bytes fit the budget, else jpeg."""
    if fmt != "auto":
        return check_format(fmt)
    raw = n * FORMATS.get("raw").bytes_per_image(size, ())
    return "raw" if raw <= budget_bytes(folder, budget_gb) else "jpeg"


# ---------------------------------------------------------------- load or build
def _open_complete(entry: Entry, fmt: str) -> CachedImages | None:
    for name in (["raw", "jpeg"] if fmt == "auto" else [fmt]):
        meta = entry.meta(name)
        if meta.exists():
            try:
                return FORMATS.get(name).open(entry, json.loads(meta.read_text()))
            except (OSError, ValueError):   # a data file deleted under it: rebuild
                continue
    return None


def _partial(entry: Entry) -> str | None:
    """The format an interrupted build of this entry was writing, if any."""
    for name in FORMATS:
        if all(entry.file(name, p).exists() for p in FORMATS.get(name).parts):
            return name
    return None


def _remove_stale(entry: Entry, keep_format: str) -> None:
    """Older entries of the same list and size, and the other formats' partial builds of this one."""
    others = {f"{entry.name}.{name}.{part}" for name in FORMATS if name != keep_format
              for part in FORMATS.get(name).parts}
    for p in entry.folder.glob(f"{entry.stem}-*"):
        if not p.name.startswith(entry.name + ".") or p.name in others:
            p.unlink(missing_ok=True)


def load_images(root: str | Path, rel_paths: Sequence[str], size: int, cache: CacheSpec = CacheSpec(), *,
                progress: bool = False, log: Callable[[str], None] | None = None, threads: int = 0) -> CachedImages:
    """The decoded cache of ``rel_paths`` under ``root`` at ``size``, kept as ``cache`` says: opened if
    complete, else built (or resumed) under a lock that makes concurrent workers wait for one builder.

    ``progress`` draws a bar with an ETA (on a terminal); otherwise ``log`` gets a line every 30 s.
    """
    root, fmt = Path(root), check_format(cache.format)
    folder = cache.folder(root)
    entry = entry_for(root, rel_paths, size, folder)
    found = _open_complete(entry, fmt)   # no lock needed: a read-only prebuilt cache works too
    if found is not None:
        return found
    require_writable(folder)
    with open(folder / f"{entry.stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # other processes wait here while one builds
        found = _open_complete(entry, fmt)
        if found is not None:
            return found
        resumable = _partial(entry)
        chosen = resumable if resumable and fmt in ("auto", resumable) else \
            cache.choose(len(rel_paths), size, folder)
        _remove_stale(entry, chosen)
        meta = build(entry, chosen, root, rel_paths, size, progress, log, threads)
    return FORMATS.get(chosen).open(entry, meta)


def build(entry: Entry, fmt: str, root: Path, paths: Sequence[str], size: int, progress: bool = False,
          log: Callable[[str], None] | None = None, threads: int = 0) -> dict:
    """Decode every image into ``fmt``'s files, resuming an interrupted build; returns the metadata."""
    n, start = len(paths), time.perf_counter()
    what = f"decoded cache of {n:,} images from {root} at {size} px ({fmt})"
    sink = None
    try:
        sink = FORMATS.get(fmt).sink(entry, root, paths, size)
        resumed = sink.done
        with _Reporter(what, n, resumed, progress, log) as report, \
                ThreadPoolExecutor(threads or os.cpu_count() or 2, "facenet-cache") as pool:   # PIL frees GIL
            for first, results in _chunks(pool, sink.encode, resumed, n):
                sink.commit(first, results)
                report(first + len(results))
        sink.finish()
        meta = {"format": fmt, "n": n, "size": size, "root": str(root), "bad": sorted(sink.bad),
                "resumed_from": resumed, "seconds": round(time.perf_counter() - start, 1)}
        _write_atomic(entry.meta(fmt), json.dumps(meta))
        return meta
    except OSError as e:
        full = e.errno in _FULL_DISK
        if full and sink is not None:
            sink.discard()
        elif full:   # failed while allocating: the partial files are all there is
            _unlink(*(entry.file(fmt, part) for part in FORMATS.get(fmt).parts))
        if full:
            free = free_bytes(entry.folder) / 1e9
            smaller = "use the smaller jpeg format (cache_format=jpeg, or a lower cache_budget_gb), " \
                if fmt == "raw" else ""
            raise DataError(f"disk full while writing the {what} in {entry.folder} ({free:.1f} GB free); the "
                            f"partial cache was removed: free space, {smaller}or set cache_dir or "
                            f"FACESEARCH_CACHE to a larger disk") from None
        raise DataError(f"cannot write the {what} in {entry.folder} ({e.strerror or e}); set cache_dir or "
                        f"FACESEARCH_CACHE to a writable folder with free space") from None


def _chunks(pool: ThreadPoolExecutor, fn: Callable, start: int, stop: int) -> Iterator[tuple[int, list]]:
    """``fn`` over ``range(start, stop)`` in order, one chunk at a time with the next one already running
    (bounded: never a future per image of the whole list)."""
    pending: deque = deque()
    nxt = start
    try:
        while pending or nxt < stop:
            while nxt < stop and len(pending) < 2:
                hi = min(nxt + CHUNK, stop)
                pending.append((nxt, [pool.submit(fn, i) for i in range(nxt, hi)]))
                nxt = hi
            first, futures = pending.popleft()
            yield first, [f.result() for f in futures]
    finally:
        for _, futures in pending:
            for f in futures:
                f.cancel()


class _Reporter:
    """A progress bar with an ETA on a terminal; otherwise a line to ``log`` every ``LOG_EVERY_S``."""

    def __init__(self, what: str, total: int, done: int, bar: bool, log: Callable[[str], None] | None):
        self.what, self.total, self.first, self.log = what, total, done, log
        self.start = self.last = time.perf_counter()
        self.bar = self.task = None
        if bar and total - done > CHUNK:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=True)
        if log and done:
            log(f"resuming the {what} after {done:,} images")
        elif log and self.bar is None and total >= 20 * CHUNK:
            log(f"building the {what}")

    def __enter__(self) -> "_Reporter":
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task(f"building the {self.what}", total=self.total, completed=self.first)
        return self

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.update(self.task, completed=done)
        elif self.log and now - self.last >= LOG_EVERY_S:
            self.last = now
            rate = (done - self.first) / (now - self.start)
            self.log(f"building the {self.what}: {done:,}/{self.total:,} ({100 * done / self.total:.0f}%), "
                     f"{rate:.0f} images/s, about {fmt_duration((self.total - done) / max(rate, 1e-9))} left")

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
        if self.log and exc[0] is None and self.last > self.start:   # a long build says when it is done
            self.log(f"built the {self.what} in {fmt_duration(time.perf_counter() - self.start)}")
