"""One decoded-image cache entry on disk: decoding a source file, and the sinks a build writes through
(``facenet.data.cache`` drives them)."""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import unreadable


JPEG_QUALITY = 90            # 4:2:0; about 1/13 of the raw bytes on the synthetic faces at 256 px


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

