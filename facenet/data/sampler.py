"""The course's batch sampler, and the training set of a config (its identities and sampler)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


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
        self._plan: tuple[int | None, np.ndarray] = (None, np.zeros((0, 0), np.int64))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> np.ndarray:
        """This epoch's plan: one row of dataset positions per batch (int64, n x batch_size * n_per_class)."""
        if self._plan[0] != self.epoch:
            self._plan = (self.epoch, self._draw())
        return self._plan[1]

    def _draw(self) -> np.ndarray:
        # The random draws, and so the batches, are those of the first (list-of-groups) version:
        # one permutation per identity in label order, then one over all groups.
        rng = np.random.default_rng([self.seed, self.epoch])
        k, width = self.n_per_class, self.batch_size * self.n_per_class
        kept, counts = [], np.zeros(self.n_classes, np.int64)
        for c, idx in enumerate(self.by_class):
            idx = rng.permutation(idx)[: self.max_img_per_cls]
            counts[c] = len(idx) // k
            kept.append(idx[: counts[c] * k])
        groups = np.concatenate(kept).astype(np.int64, copy=False).reshape(-1, k) if kept else \
            np.zeros((0, k), np.int64)
        order = rng.permutation(len(groups))
        chosen, filled, seen = np.empty(len(order), np.int64), 0, set()
        for g, c in zip(order.tolist(), np.repeat(np.arange(self.n_classes), counts)[order].tolist()):
            if c in seen:
                continue   # the course drops a group whose identity is already in the batch
            chosen[filled] = g
            filled += 1
            seen.add(c)
            if len(seen) == self.batch_size:
                seen = set()
        n = filled // self.batch_size   # an incomplete last batch is dropped
        return groups[chosen[: n * self.batch_size]].reshape(n, width)

    def __iter__(self):
        for i, idx in enumerate(self.batches()):
            yield Batch(idx, (self.seed, self.epoch, i))

    def __len__(self) -> int:
        return len(self.batches())   # the epoch's plan is one vectorised draw, kept for the epoch


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
