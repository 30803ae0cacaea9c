"""Training batches from the decoded-image cache: random crops and mirrors cut by background threads.

Each image's window is sliced out of the raw memmap (or its JPEG decoded whole, then cut: see
``facenet.data.cache``) on uint8 and copied into one of a ring of buffers that are reused batch after
batch (pinned when the model is on CUDA; on the GPU itself when the GPU decodes the JPEGs). Threads,
not worker processes: the work is slicing and copying, which runs outside the GIL, while a
process must hand each batch over in freshly mapped shared memory, and on 2 cores those
page faults cost more than the cutting itself (benchmarks/README.md has the numbers).
The float conversion and the other augmentations then run on whole batches on the
training device (``facenet.data.transforms``, ``facenet.data.augment``).
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Iterator

import numpy as np
import torch

from ..devices import copy_done
from ..errors import DataError
from .cache_formats import CachedImages, as_images
from .sampler import Batch, ClassBalancedSampler


def cut(images: CachedImages, batch: Batch, res: int, flip: float, out: torch.Tensor) -> torch.Tensor:
    """Write each image's random ``res`` x ``res`` window, mirrored with probability ``flip``, into
    ``out``; the draws come from ``batch.seed`` alone, so any thread, a resumed run and every
    cache format cut alike (the format decodes each image, or slices it from a memmap)."""
    images = as_images(images)
    rng = np.random.default_rng(batch.seed)
    n = len(batch.indices)
    top, left = rng.integers(0, images.shape[1] - res + 1, (2, n))
    mirror = rng.random(n) < flip
    return images.cut(batch.indices, top, left, mirror, res, out)


class BatchLoader:
    """Iterates a sampler's batches as (uint8 NHWC crops, labels), cut up to ``2 * threads`` batches ahead.

    The contract that lets buffers be reused: a consumer is done with a batch (or has queued
    its copy to ``device``) when it asks for the next. ``threads=0`` cuts in the calling thread.
    On CUDA the buffers are pinned, and a slot is refilled only once the copy queued from it has
    run; the slot refilled is the one given back a step earlier, whose copy was queued before the
    step now running, so the cutting overlaps that step instead of waiting for it. A cache that
    decodes on the GPU itself fills buffers that already live there.
    """

    def __init__(self, images: CachedImages | np.ndarray, labels: np.ndarray, sampler: ClassBalancedSampler,
                 res: int, flip: float = 0.0, threads: int = 2, device: torch.device | str = "cpu"):
        self.images = as_images(images)   # a bare uint8 (N, S, S, 3) array is a raw cache
        if res > self.images.size:
            raise DataError(f"crop {res} px is larger than the cached images ({self.images.size} px)")
        self.device = torch.device(device)
        on_cpu = self.images.device == "cpu"           # else the batches are decoded on the GPU itself
        self.pin = self.device.type == "cuda" and on_cpu
        self.labels, self.sampler, self.res, self.flip = labels, sampler, res, flip
        shape = (sampler.batch_size * sampler.n_per_class, res, res, 3)
        # one being consumed, one whose copy may still be in flight, two per thread being cut
        slots = 2 * threads + 2
        self.ring = [torch.empty(shape, dtype=torch.uint8, device=self.images.device, pin_memory=self.pin)
                     for _ in range(slots)]
        self.copied: list[torch.cuda.Event | None] = [None] * slots   # each slot's last copy to the GPU
        # One intra-op thread each: a copy of a whole crop is big enough for torch to split it over
        # an OpenMP team of the loader thread's own, which would contend with the training thread's.
        self.pool = ThreadPoolExecutor(threads, "facenet-loader", torch.set_num_threads, (1,)) if threads else None

    def __len__(self) -> int:
        return len(self.sampler)

    def _fill(self, batch: Batch, slot: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.copied[slot] is not None:
            self.copied[slot].synchronize()            # the GPU has read this slot's previous batch
        x = cut(self.images, batch, self.res, self.flip, self.ring[slot])
        return x, torch.from_numpy(self.labels[batch.indices])

    def _submit(self, batch: Batch, slot: int) -> Future:
        if self.pool is not None:
            return self.pool.submit(self._fill, batch, slot)
        done = Future()
        done.set_result(self._fill(batch, slot))
        return done

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches, pending, slots = enumerate(self.sampler), deque(), len(self.ring)

        def submit() -> None:
            j, batch = next(batches, (None, None))
            if batch is not None:
                pending.append((j % slots, self._submit(batch, j % slots)))

        for _ in range(slots - 1):   # the last slot is filled once the first batch is given back
            submit()
        try:
            while pending:
                slot, future = pending[0]
                yield future.result()
                pending.popleft()
                if self.pin:   # the consumer has queued its copy of this slot on the device's current stream
                    self.copied[slot] = copy_done(self.device)
                submit()       # into the slot given back one step earlier
        finally:               # an abandoned epoch: let the threads finish before the slots are reused
            futures = [f for _, f in pending]
            for f in futures:
                f.cancel()
            # a cancelled future never runs, and after close() no thread would ever mark it done: wait()
            # on it would block for good (an exception mid-epoch, then fit's close(), then this finally)
            wait([f for f in futures if not f.cancelled()])

    def close(self) -> None:
        """Stop the threads once they finish what they are cutting."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def __del__(self) -> None:
        # no waiting here: the last reference may go in one of the pool's own threads
        pool = getattr(self, "pool", None)   # absent after a failed __init__
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
