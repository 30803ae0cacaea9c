"""What a decoded-image cache holds and how it is read: ``CachedImages`` and its formats
(``facenet.data.cache`` builds and opens them)."""
from __future__ import annotations

import functools
import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image



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

