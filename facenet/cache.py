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
import functools
import hashlib
import io
import json
import os
import shutil
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ConfigError, DataError, unreadable
from .registry import Registry

JPEG_QUALITY = 90            # 4:2:0; about 1/13 of the raw bytes on the synthetic faces at 256 px
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


# ---------------------------------------------------------------- what is stored
class CachedImages:
    """One list's images at one size, read-only; indexing gives decoded uint8 HWC pixels."""

    format = ""
    device = "cpu"               # where ``cut`` writes

    def __init__(self, n: int, size: int, bad: Sequence[int], path: Path | None):
        self.n, self.size, self.bad, self.path = n, size, list(bad), path

    def __len__(self) -> int:
        return self.n

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.size, self.size, 3)

    def for_device(self, device) -> "CachedImages":
        """The reader to train with on ``device`` (the jpeg format decodes on a CUDA device itself)."""
        return self

    def cut(self, indices: np.ndarray, top: np.ndarray, left: np.ndarray, mirror: np.ndarray, res: int, out):
        """Write image ``indices[k]``'s window at (``top[k]``, ``left[k]``), mirrored where ``mirror[k]``,
        into ``out[k]`` (a uint8 (B, res, res, 3) tensor on ``self.device``); returns ``out[:n]``."""
        raise NotImplementedError

    def __getitem__(self, key: int | slice) -> np.ndarray:
        raise NotImplementedError


class RawImages(CachedImages):
    """A uint8 (N, S, S, 3) array, memmapped: a window is a slice of the file's pages."""

    format = "raw"

    def __init__(self, array: np.ndarray, bad: Sequence[int] = (), path: Path | None = None):
        import torch

        super().__init__(len(array), array.shape[1], bad, path)
        self.array = array
        with warnings.catch_warnings():   # torch warns that the memmap is read-only; nothing writes to it
            warnings.simplefilter("ignore", UserWarning)
            self.tensor = torch.from_numpy(array)

    def cut(self, indices, top, left, mirror, res, out):
        images = self.tensor
        for k, (i, t, l, m) in enumerate(zip(indices.tolist(), top.tolist(), left.tolist(), mirror.tolist())):
            window = images[i, t:t + res, l:l + res]
            out[k] = window.flip(1) if m else window
        return out[:len(indices)]

    def __getitem__(self, key):
        return self.array[key]


class PackedJpeg(CachedImages):
    """JPEG files back to back in one memmapped file; ``offsets[i]:offsets[i + 1]`` is image i
    (empty for an unreadable source file)."""

    format = "jpeg"

    def __init__(self, data: np.ndarray, offsets: np.ndarray, size: int, bad: Sequence[int] = (),
                 path: Path | None = None):
        super().__init__(len(offsets) - 1, size, bad, path)
        self.data, self.offsets = data, offsets

    def encoded(self, i: int) -> np.ndarray:
        return self.data[self.offsets[i]:self.offsets[i + 1]]

    def decode(self, i: int) -> np.ndarray:
        """The whole resized image (S, S, 3): every window then sits where it does in the raw format.
        (PIL's draft mode cannot help here: it scales by 1/2..1/8, and the stored image is already
        at the size the crops are cut from.)"""
        encoded = self.encoded(i)
        if not len(encoded):
            return np.zeros((self.size, self.size, 3), np.uint8)
        with Image.open(io.BytesIO(encoded)) as im:
            return np.asarray(im)

    def cut(self, indices, top, left, mirror, res, out):
        dst = out.numpy()
        for k, (i, t, l, m) in enumerate(zip(indices.tolist(), top.tolist(), left.tolist(), mirror.tolist())):
            window = self.decode(i)[t:t + res, l:l + res]
            dst[k] = window[:, ::-1] if m else window
        return out[:len(indices)]

    def __getitem__(self, key):
        if isinstance(key, slice):
            ids = range(*key.indices(self.n))
            out = np.empty((len(ids), self.size, self.size, 3), np.uint8)
            for k, image in enumerate(_decode_pool().map(self.decode, ids)):   # PIL decodes without the GIL
                out[k] = image
            return out
        return self.decode(int(key))

    def for_device(self, device) -> CachedImages:
        return BatchedJpeg(self, device) if gpu_decode_ok(str(device)) else self


class BatchedJpeg(CachedImages):
    """A packed JPEG cache decoded a batch at a time by ``torchvision.io.decode_jpeg`` on ``device``
    (nvJPEG on CUDA), then every window gathered by one indexing op; the same windows as the CPU path."""

    format = "jpeg"

    def __init__(self, packed: PackedJpeg, device):
        super().__init__(packed.n, packed.size, packed.bad, packed.path)
        self.packed, self.device = packed, str(device)

    def cut(self, indices, top, left, mirror, res, out):
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        # np.array: small writable copies (torch warns about tensors over the read-only memmap)
        data = [torch.from_numpy(np.array(self.packed.encoded(i))) for i in indices.tolist()]
        hwc = torch.stack(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)).permute(0, 2, 3, 1)
        n, dev = len(indices), hwc.device
        span = torch.arange(res, device=dev)
        rows = torch.as_tensor(top, device=dev)[:, None] + span
        cols = torch.as_tensor(left, device=dev)[:, None] + span
        cols = torch.where(torch.as_tensor(mirror, device=dev)[:, None], cols.flip(1), cols)
        out[:n] = hwc[torch.arange(n, device=dev)[:, None, None], rows[:, :, None], cols[:, None, :]]
        return out[:n]

    def __getitem__(self, key):
        return self.packed[key]


@functools.cache
def gpu_decode_ok(device: str) -> bool:
    """Whether torchvision can decode JPEG on ``device``: CUDA only, checked once on a tiny image.
    ``FACESEARCH_GPU_DECODE=0`` turns it off."""
    if not device.startswith("cuda") or os.environ.get("FACESEARCH_GPU_DECODE", "1") == "0":
        return False
    try:
        import torch
        from torchvision.io import decode_jpeg

        buf = io.BytesIO()
        Image.new("RGB", (16, 16), (90, 120, 200)).save(buf, "JPEG")
        decode_jpeg([torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)], device=device)
        return True
    except Exception as e:   # torchvision built without nvJPEG, a driver too old...
        warnings.warn(f"GPU JPEG decoding unavailable on {device} ({type(e).__name__}: {e}); "
                      f"decoding in the loader threads on the CPU", stacklevel=2)
        return False


@functools.cache
def _decode_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(min(4, os.cpu_count() or 1), "facenet-decode")


def as_images(images) -> CachedImages:
    """A ``CachedImages`` as is; a bare uint8 (N, S, S, 3) array or tensor as a raw cache."""
    if isinstance(images, CachedImages):
        return images
    return RawImages(images.numpy() if hasattr(images, "numpy") else np.asarray(images))


# ---------------------------------------------------------------- decoding a source file
def decode_resized(path: Path, size: int) -> Image.Image | None:
    """Decode, resize the shorter side to ``size`` and centre-crop square; None if unreadable.

    A JPEG at least twice the target is decoded at a reduced scale first (libjpeg's DCT scaling,
    never below the target), which is several times faster; the output size and crop box are
    those of a full decode, the pixels differ by about a grey level. Both formats store the
    result of this function, so they hold the same images up to the JPEG encoding.
    """
    try:
        with Image.open(path) as im:
            w, h = im.size
            s = size / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            if im.format == "JPEG" and min(w, h) >= 2 * size:
                im.draft("RGB", (nw, nh))
            im = im.convert("RGB").resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            return im.crop((left, top, left + size, top + size))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None


def encode_jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


# ---------------------------------------------------------------- one cache entry on disk
@dataclass(frozen=True)
class Entry:
    """The files of one (list, size, content) in ``folder``: ``<stem>-<content>.<format>.<part>``."""

    folder: Path
    stem: str                    # <hash of the list and root>-<size>
    content: str                 # hash of every file's size and mtime

    @property
    def name(self) -> str:
        return f"{self.stem}-{self.content}"

    def file(self, fmt: str, part: str) -> Path:
        return self.folder / f"{self.name}.{fmt}.{part}"

    def meta(self, fmt: str) -> Path:
        """Written last, by rename: the entry is complete in ``fmt`` when this file exists."""
        return self.file(fmt, "json")


def entry_for(root: Path, rel_paths: Sequence[str], size: int, folder: Path) -> Entry:
    list_key = hashlib.sha1(("\n".join(rel_paths) + f"|{root.resolve()}").encode()).hexdigest()[:12]
    h = hashlib.sha1()
    for p in rel_paths:
        try:
            st = os.stat(root / p)
        except OSError as e:   # vanished since the scan, a loop, no permission: one line naming it
            raise unreadable(root / p, e) from None
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return Entry(folder, f"{list_key}-{size}", h.hexdigest()[:12])


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _unlink(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


class Sink:
    """Writes one format's files for a build: ``encode`` runs in the pool threads, ``commit``
    records one finished chunk (in order), ``finish`` renames the result into place."""

    done = 0                     # images committed by an earlier, interrupted build
    bad: list[int]

    def encode(self, i: int):
        raise NotImplementedError

    def commit(self, first: int, results: list) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        """Delete the partial files (after a full disk: the space goes back, nothing looks complete)."""
        raise NotImplementedError


class RawSink(Sink):
    """The final array's file, preallocated (a full disk fails here, not as SIGBUS in a page fault
    later), with ``.part`` names and a small json of the images done so far."""

    def __init__(self, entry: Entry, root: Path, paths: Sequence[str], size: int):
        self.root, self.paths, self.size = root, paths, size
        self.final, self.part, self.progress = entry.file("raw", "npy"), entry.file("raw", "npy.part"), \
            entry.file("raw", "progress")
        shape = (len(paths), size, size, 3)
        if self.part.exists() and self.progress.exists():
            state = json.loads(self.progress.read_text())
            self.done, self.bad = state["done"], state["bad"]
            self.out = np.lib.format.open_memmap(self.part, mode="r+")
        else:
            _unlink(self.progress)
            self.bad = []
            with open(self.part, "wb") as f:   # the .npy header, then every byte of the array reserved
                header = {"descr": "|u1", "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(f, header)
                os.posix_fallocate(f.fileno(), 0, f.tell() + int(np.prod(shape)))
            self.out = np.lib.format.open_memmap(self.part, mode="r+")

    def encode(self, i: int) -> bool:
        image = decode_resized(self.root / self.paths[i], self.size)
        self.out[i] = 0 if image is None else np.asarray(image)
        return image is not None

    def commit(self, first: int, results: list[bool]) -> None:
        self.bad += [first + k for k, ok in enumerate(results) if not ok]
        _write_atomic(self.progress, json.dumps({"done": first + len(results), "bad": self.bad}))

    def finish(self) -> None:
        self.out.flush()
        del self.out
        os.replace(self.part, self.final)
        _unlink(self.progress)

    def discard(self) -> None:
        self.out = None
        _unlink(self.part, self.progress)


class JpegSink(Sink):
    """Appends each chunk's JPEGs to ``.bin.part`` and then their lengths to ``.len.part``; the
    lengths file is the progress record (data past its sum is a torn chunk, cut off on resume)."""

    def __init__(self, entry: Entry, root: Path, paths: Sequence[str], size: int):
        self.root, self.paths, self.size = root, paths, size
        self.final, self.part = entry.file("jpeg", "bin"), entry.file("jpeg", "bin.part")
        self.index, self.lengths_part = entry.file("jpeg", "idx.npy"), entry.file("jpeg", "len.part")
        lengths = np.zeros(0, np.int64)
        if self.part.exists() and self.lengths_part.exists():
            raw = self.lengths_part.read_bytes()
            lengths = np.frombuffer(raw[:len(raw) // 8 * 8], np.int64)
            ends = np.cumsum(lengths)
            lengths = lengths[:int(np.searchsorted(ends, self.part.stat().st_size, side="right"))]
        self.done = len(lengths)
        with open(self.lengths_part, "wb") as f:
            f.write(lengths.tobytes())
        self.data = open(self.part, "r+b" if self.part.exists() else "w+b")
        self.data.truncate(int(lengths.sum()))
        self.data.seek(0, os.SEEK_END)
        self.lengths = open(self.lengths_part, "ab")
        self.bad = np.flatnonzero(lengths == 0).tolist()

    def encode(self, i: int) -> bytes:
        image = decode_resized(self.root / self.paths[i], self.size)
        return b"" if image is None else encode_jpeg(image)

    def commit(self, first: int, results: list[bytes]) -> None:
        _append(self.data, b"".join(results))
        _append(self.lengths, np.array([len(r) for r in results], np.int64).tobytes())
        self.bad += [first + k for k, r in enumerate(results) if not r]

    def finish(self) -> None:
        self.data.close()
        self.lengths.close()
        lengths = np.fromfile(self.lengths_part, np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        tmp = self.index.with_name(f".{self.index.name}.tmp{os.getpid()}.npy")
        np.save(tmp, offsets)
        os.replace(tmp, self.index)
        os.replace(self.part, self.final)
        _unlink(self.lengths_part)

    def discard(self) -> None:
        for f in (self.data, self.lengths):
            try:
                f.close()
            except OSError:   # the close flushes what the full disk refused
                pass
        _unlink(self.part, self.lengths_part, self.index)


def _append(f, data: bytes) -> None:
    f.write(data)
    f.flush()


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
def parse_bytes(text: str, source: str) -> float:
    """'50' (GB), '50G', '500M', '1.5T' -> bytes."""
    units = {"": 1e9, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    t = text.strip().upper().removesuffix("B")
    unit = t[-1:] if t[-1:] in units and t[-1:] else ""
    try:
        value = float(t[:-1] if unit else t)
    except ValueError:
        raise ConfigError(f"{source}={text!r}: expected a size such as 50 (GB), 50G or 500M") from None
    if value < 0:
        raise ConfigError(f"{source}={text!r}: a budget cannot be negative")
    return value * units[unit]


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
        return parse_bytes(os.environ[BUDGET_ENV], BUDGET_ENV)
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


def load_images(root: str | Path, rel_paths: Sequence[str], size: int, cache_dir: str | Path = "",
                progress: bool = False, fmt: str = "auto", budget_gb: float = 0.0,
                log: Callable[[str], None] | None = None, threads: int = 0) -> CachedImages:
    """The decoded cache of ``rel_paths`` under ``root`` at ``size``: opened if complete, else built
    (or resumed) under a lock that makes concurrent workers wait for one builder.

    ``progress`` draws a bar with an ETA (on a terminal); otherwise ``log`` gets a line every 30 s.
    """
    root = Path(root)
    check_format(fmt)
    folder = cache_folder(root, cache_dir)
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
            choose_format(fmt, len(rel_paths), size, folder, budget_gb)
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
                     f"{rate:.0f} images/s, about {_duration((self.total - done) / max(rate, 1e-9))} left")

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
        if self.log and exc[0] is None and self.last > self.start:   # a long build says when it is done
            self.log(f"built the {self.what} in {_duration(time.perf_counter() - self.start)}")


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
