"""The training loader: per-image crops and mirrors on uint8, cut ahead by threads into reused buffers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facenet.data.loader import BatchLoader, cut
from facenet.data.sampler import Batch, ClassBalancedSampler
from facenet.errors import DataError

IMAGES = np.random.default_rng(0).integers(0, 256, (80, 8, 8, 3), dtype=np.uint8)
LABELS = np.repeat(np.arange(20), 4)


def window_kind(crop: np.ndarray, image: np.ndarray) -> str:
    """'plain' or 'mirrored' if ``crop`` is a window of ``image``, else 'none'."""
    r = crop.shape[0]
    windows = [image[t:t + r, l:l + r] for t in range(image.shape[0] - r + 1) for l in range(image.shape[1] - r + 1)]
    if any((crop == w).all() for w in windows):
        return "plain"
    return "mirrored" if any((crop == w[:, ::-1]).all() for w in windows) else "none"


def test_cut_crops_and_mirrors_each_image_reproducibly():
    images, out = torch.from_numpy(IMAGES), torch.empty(10, 5, 5, 3, dtype=torch.uint8)
    batch = Batch(np.array([7, 2, 9, 2, 7, 1, 3, 4]), (0, 0, 0))
    x = cut(images, batch, 5, 0.5, out).clone()
    assert x.dtype == torch.uint8 and x.shape == (8, 5, 5, 3)
    kinds = [window_kind(crop, IMAGES[i]) for crop, i in zip(x.numpy(), batch.indices)]
    assert "none" not in kinds and "plain" in kinds and "mirrored" in kinds
    assert torch.equal(cut(images, batch, 5, 0.5, out), x)                                 # same seed, same crops
    assert not torch.equal(cut(images, Batch(batch.indices, (0, 1, 0)), 5, 0.5, out), x)   # next epoch, new ones
    plain = cut(images, batch, 5, 0.0, out)
    assert all(window_kind(crop, IMAGES[i]) == "plain" for crop, i in zip(plain.numpy(), batch.indices))


def epoch(loader: BatchLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]   # a batch's buffer is reused once the next is asked for


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_cut_the_same_batches_in_order(threads):
    sampler = ClassBalancedSampler(LABELS, 3, 2, 100, seed=1)
    serial = epoch(BatchLoader(IMAGES, LABELS, sampler, 6, flip=0.5, threads=0))
    loader = BatchLoader(IMAGES, LABELS, sampler, 6, flip=0.5, threads=threads)
    assert len(loader.ring) == 2 * threads + 2
    assert len(serial) == len(loader) == len(sampler) > 2 * threads + 2
    for (x, y), (sx, sy), batch in zip(epoch(loader), serial, sampler.batches()):
        assert torch.equal(x, sx) and torch.equal(y, sy)
        assert y.tolist() == LABELS[batch].tolist() and x.shape == (6, 6, 6, 3)
    sampler.set_epoch(1)
    assert not torch.equal(epoch(loader)[0][0], serial[0][0])
    loader.close()


def test_an_abandoned_epoch_leaves_the_next_one_intact():
    sampler = ClassBalancedSampler(LABELS, 3, 2, 100, seed=2)
    reference = epoch(BatchLoader(IMAGES, LABELS, sampler, 6, flip=0.5, threads=0))
    loader = BatchLoader(IMAGES, LABELS, sampler, 6, flip=0.5, threads=2)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert all(torch.equal(x, rx) for (x, _), (rx, _) in zip(epoch(loader), reference))
    loader.close()


def test_buffers_are_reused_not_reallocated():
    loader = BatchLoader(IMAGES, LABELS, ClassBalancedSampler(LABELS, 3, 2, 100), 6, threads=1)
    pointers = {x.data_ptr() for x, _ in loader}
    assert pointers == {slot.data_ptr() for slot in loader.ring}
    loader.close()


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_the_previous_batch_stays_intact_while_the_next_is_used(threads):
    """What a GPU needs: a batch's copy to the device may still be running when the consumer takes
    the next batch, so its slot must not be refilled before the batch after that is asked for.
    (With one slot, or a refill of the slot just given back, the cut would overwrite it or wait
    for the step just queued.) At least two slots whatever the thread count."""
    sampler = ClassBalancedSampler(LABELS, 3, 2, 100, seed=3)
    loader = BatchLoader(IMAGES, LABELS, sampler, 6, flip=0.5, threads=threads)
    assert len(loader.ring) >= 2
    previous = None
    for x, y in loader:
        if previous is not None:
            held, copy = previous
            assert torch.equal(held, copy)                  # not overwritten by the batch being cut
            assert held.data_ptr() != x.data_ptr()
        previous = (x, x.clone())
    loader.close()


def test_refuses_a_crop_larger_than_the_cache():
    with pytest.raises(DataError, match="larger than the cached images"):
        BatchLoader(IMAGES, LABELS, ClassBalancedSampler(LABELS, 3, 2, 100), 9)


def test_an_epoch_abandoned_after_close_does_not_hang():
    """What an exception in a training step leaves: an epoch suspended mid-way, fit()'s close(), then the
    epoch's generator closed; cancelled futures must not be waited for (no thread is left to run them)."""
    import threading

    loader = BatchLoader(IMAGES, LABELS, ClassBalancedSampler(LABELS, 3, 2, 100), 6, threads=2)
    batches = iter(loader)
    next(batches)
    loader.close()
    closer = threading.Thread(target=batches.close, daemon=True)
    closer.start()
    closer.join(timeout=60)
    assert not closer.is_alive(), "closing the abandoned epoch hangs"
