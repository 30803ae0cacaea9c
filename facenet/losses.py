"""Training losses, by name: classification (softmax, CosFace, ArcFace, sub-centre ArcFace),
triplet variants, and weighted sums of two of them.

Every loss is an ``nn.Module`` called as ``loss(embeddings (B, D), labels (B,)) -> scalar`` and
owns its classifier weights (they are not part of the model, so they never count toward the
parameter cap). ``min_per_class`` says how many images of each identity a batch must hold.

Triplet losses work on L2-normalised embeddings with the squared Euclidean distance
``|a - b|^2 = 2 - 2 cos(a, b)`` (the course trainer's choice; ranking by it is ranking by cosine
similarity), so margins live on a [0, 4] scale. Choosing triplets (mining) is separate from
the loss: a miner maps a detached distance matrix and the labels to ``Triplets``, index tensors
``(anchor, positive, negative)`` of a fixed length with a mask of those that count (no host
read of their number), and ``triplet_margin_loss`` scores them. Mining draws from torch's
global RNG (seeded by the trainer) unless given a generator.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import TrainConfig
from .errors import ConfigError
from .registry import Registry

LOSSES: Registry = Registry("loss")

Miner = Callable[..., "Triplets"]                   # (dist, labels, generator=None) -> Triplets

COS_EPS = 1e-6    # cosines are clamped to [-1 + eps, 1 - eps] so sin(theta) and its gradient stay finite


def build_loss(config: TrainConfig, n_classes: int) -> nn.Module:
    return LOSSES.create(config.loss, config, n_classes)


def fp32(device: torch.device):
    """Autocast off: margins and distances are computed in fp32 whatever the caller's context."""
    return torch.autocast(device_type=device.type, enabled=False)


# ---------------------------------------------------------------- classification
class SoftmaxLoss(nn.Module):
    """A linear classifier over the embedding and cross-entropy (the course baseline)."""

    min_per_class = 1

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.fc = nn.Linear(dim, n_classes)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.fc(embeddings), labels)


class CosineClassifier(nn.Module):
    """Cosines between embeddings and ``subcenters`` normalised centres per class; each class
    scores its closest sub-centre (sub-centre ArcFace; one sub-centre is plain ArcFace/CosFace)."""

    def __init__(self, dim: int, n_classes: int, subcenters: int = 1):
        super().__init__()
        self.n_classes, self.subcenters = n_classes, subcenters
        self.weight = nn.Parameter(torch.empty(n_classes * subcenters, dim))
        nn.init.xavier_normal_(self.weight)

    def forward(self, embeddings: Tensor) -> Tensor:
        cos = F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float()))
        return cos.view(len(embeddings), self.n_classes, self.subcenters).amax(dim=2)


class CosMargin:
    """CosFace / AM-softmax: cos(theta) - m on the target class."""

    def __init__(self, m: float):
        self.m = m

    def __call__(self, cos: Tensor) -> Tensor:
        return cos - self.m

    def __repr__(self) -> str:
        return f"CosMargin(m={self.m})"


class ArcMargin:
    """ArcFace: cos(theta + m) on the target class.

    Past theta + m > pi, cos(theta + m) would rise again and reward moving away from the class,
    so below ``th = cos(pi - m)`` the target logit is ``cos - mm`` with ``mm = sin(pi - m) m``
    (insightface); with ``easy`` the margin applies only where cos > 0, else the logit is cos.
    """

    def __init__(self, m: float, easy: bool = False):
        self.m, self.easy = m, easy
        self.cos_m, self.sin_m = math.cos(m), math.sin(m)
        self.th, self.mm = math.cos(math.pi - m), math.sin(math.pi - m) * m

    def __call__(self, cos: Tensor) -> Tensor:
        sin = torch.sqrt(1.0 - cos * cos)     # > 0 on clamped cosines: finite value and gradient
        phi = cos * self.cos_m - sin * self.sin_m
        if self.easy:
            return torch.where(cos > 0, phi, cos)
        return torch.where(cos > self.th, phi, cos - self.mm)

    def __repr__(self) -> str:
        return f"ArcMargin(m={self.m}, easy={self.easy})"


class MarginSoftmax(nn.Module):
    """Scaled cosine logits with a margin transform on the target class, then cross-entropy.

    All in fp32 on cosines clamped away from +-1 (insightface arcface_torch style)."""

    min_per_class = 1

    def __init__(self, dim: int, n_classes: int, scale: float, margin: Callable[[Tensor], Tensor],
                 subcenters: int = 1):
        super().__init__()
        self.classifier = CosineClassifier(dim, n_classes, subcenters)
        self.scale, self.margin = scale, margin

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        with fp32(embeddings.device):
            cos = self.classifier(embeddings).clamp(-1 + COS_EPS, 1 - COS_EPS)
            target = labels[:, None]
            logits = cos.scatter(1, target, self.margin(cos.gather(1, target)))
            return F.cross_entropy(self.scale * logits, labels)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, margin={self.margin}"


# ---------------------------------------------------------------- triplets: mining
# Miners work on fixed shapes: every (anchor, positive) cell of the batch grid is a candidate
# triplet, and a mask says which count. Listing the valid pairs instead (torch.nonzero) would
# make the host wait for the GPU to finish the batch every step just to learn their number.
class Triplets(NamedTuple):
    """Index tensors of equal length, and which of their triplets count."""
    anchor: Tensor
    positive: Tensor
    negative: Tensor
    valid: Tensor      # bool


def squared_distances(x: Tensor) -> Tensor:
    """All pairwise squared Euclidean distances of L2-normalised rows: 2 - 2 cos."""
    return (2 - 2 * x @ x.T).clamp_min(0)


def compact(t: Triplets) -> tuple[Tensor, Tensor, Tensor]:
    """The valid triplets alone, as (anchor, positive, negative) index tensors in (anchor, positive)
    order. Their number is data-dependent, so this reads the mask back: for inspection and tests."""
    keep = t.valid.nonzero().squeeze(1)
    return t.anchor[keep], t.positive[keep], t.negative[keep]


def _grid(b: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Flattened (anchor, positive) indices of the b x b grid, row-major."""
    i = torch.arange(b, device=device)
    return i.view(b, 1).expand(b, b).reshape(-1), i.view(1, b).expand(b, b).reshape(-1)


def mine_triplets(dist: Tensor, labels: Tensor, hard_rank: int = 0, hard_prob: float = 0.0, margin: float = 0.0,
                  generator: torch.Generator | None = None) -> Triplets:
    """One negative per (anchor, positive) pair of distinct same-identity images whose anchor has an
    other-identity image in the batch, drawn among those images.

    With probability ``hard_prob`` the negative is hard: uniform among the ``hard_rank`` images
    nearest the anchor (0 acts as 1), or, for ``hard_rank < 0``, semi-hard: farther than the
    positive but within ``margin`` of it (uniform among all when none is). Otherwise uniform
    among all. ``hard_prob = 0`` is random-negative mining.

    Each set is a run of consecutive entries of the anchor's negatives sorted by distance, so a
    draw is one position in a [lo, hi) range of that sorted row: (B, B) work, no listing of sets.
    """
    b, device = len(labels), dist.device
    other = labels[:, None] != labels[None, :]
    eye = torch.eye(b, dtype=torch.bool, device=device)
    n_other = other.sum(dim=1, keepdim=True)                                    # (B, 1)
    valid = ~other & ~eye & (n_other > 0)
    near, order = dist.masked_fill(~other, math.inf).sort(dim=1)      # negatives first, nearest first
    if hard_rank < 0:   # cell (a, p): negatives with d_ap < d < d_ap + margin, from d_ap = dist[a, p]
        band_lo = torch.searchsorted(near, dist.contiguous(), right=True)
        band_hi = torch.searchsorted(near, (dist + margin).contiguous())
        found = band_hi > band_lo
        hard_lo, hard_hi = torch.where(found, band_lo, 0), torch.where(found, band_hi, n_other)
    else:
        hard_lo, hard_hi = torch.zeros_like(n_other), n_other.clamp(max=max(hard_rank, 1))
    use_hard = torch.rand((b, b), generator=generator, device=device) < hard_prob
    lo, hi = torch.where(use_hard, hard_lo, 0), torch.where(use_hard, hard_hi, n_other)
    pick = lo + (torch.rand((b, b), generator=generator, device=device) * (hi - lo)).long()
    pick = torch.minimum(pick, hi - 1).clamp_(0, b - 1)   # float rounding at the top; empty rows are masked
    anchor, positive = _grid(b, device)
    return Triplets(anchor, positive, order.gather(1, pick).reshape(-1), valid.reshape(-1))


def mine_batch_hard(dist: Tensor, labels: Tensor, generator: torch.Generator | None = None) -> Triplets:
    """Hermans et al.: for each anchor, its farthest positive and nearest negative. Deterministic;
    ``generator`` is accepted (and unused) so every miner has one signature."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positives, negatives = same & ~eye, ~same
    anchor = torch.arange(len(labels), device=labels.device)
    positive = dist.masked_fill(~positives, -math.inf).argmax(dim=1)
    negative = dist.masked_fill(~negatives, math.inf).argmin(dim=1)
    return Triplets(anchor, positive, negative, positives.any(dim=1) & negatives.any(dim=1))


# ---------------------------------------------------------------- triplets: loss
def _triplet_terms(dist: Tensor, anchor: Tensor, positive: Tensor, negative: Tensor, margin: float,
                   valid: Tensor | None) -> Tensor:
    terms = F.relu(dist[anchor, positive] - dist[anchor, negative] + margin)
    if valid is None:
        return terms.sum() / max(len(anchor), 1)
    return (terms * valid).sum() / valid.sum().clamp_min(1)   # a device tensor: no count read back


def triplet_margin_loss(x: Tensor, anchor: Tensor, positive: Tensor, negative: Tensor, margin: float,
                        valid: Tensor | None = None) -> Tensor:
    """Mean of max(0, |a - p|^2 - |a - n|^2 + margin) over the (valid) triplets of L2-normalised
    rows ``x`` (0 when there are none)."""
    return _triplet_terms(squared_distances(x), anchor, positive, negative, margin, valid)


class TripletLoss(nn.Module):
    """Triplet loss on L2-normalised embeddings, with triplets chosen by ``miner``."""

    min_per_class = 2

    def __init__(self, margin: float, miner: Miner, generator: torch.Generator | None = None):
        super().__init__()
        self.margin, self.miner, self.generator = margin, miner, generator

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        with fp32(embeddings.device):
            dist = squared_distances(F.normalize(embeddings.float()))
            a, p, n, valid = self.miner(dist.detach(), labels, generator=self.generator)
            return _triplet_terms(dist, a, p, n, self.margin, valid)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, miner={self.miner}"


# ---------------------------------------------------------------- combined
class WeightedSum(nn.Module):
    """``weight * first + (1 - weight) * second``; both see the same batch."""

    def __init__(self, first: nn.Module, second: nn.Module, weight: float):
        super().__init__()
        self.first, self.second, self.weight = first, second, weight
        self.min_per_class = max(first.min_per_class, second.min_per_class)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self.weight * self.first(embeddings, labels) + (1 - self.weight) * self.second(embeddings, labels)

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


# ---------------------------------------------------------------- registry
@LOSSES.register("softmax")
def softmax(config: TrainConfig, n_classes: int) -> nn.Module:
    return SoftmaxLoss(config.n_out, n_classes)


@LOSSES.register("amsoftmax")
@LOSSES.register("cosface")
def cosface(config: TrainConfig, n_classes: int) -> nn.Module:
    return MarginSoftmax(config.n_out, n_classes, config.scale, CosMargin(config.margin))


@LOSSES.register("arcface")
def arcface(config: TrainConfig, n_classes: int) -> nn.Module:
    return MarginSoftmax(config.n_out, n_classes, config.scale, ArcMargin(config.margin, config.easy_margin))


@LOSSES.register("subcenter_arcface")
def subcenter_arcface(config: TrainConfig, n_classes: int) -> nn.Module:
    if config.subcenters < 1:
        raise ConfigError(f"subcenters must be >= 1 (got {config.subcenters})")
    return MarginSoftmax(config.n_out, n_classes, config.scale, ArcMargin(config.margin, config.easy_margin),
                         config.subcenters)


@LOSSES.register("triplet")
def triplet(config: TrainConfig, n_classes: int) -> nn.Module:
    return TripletLoss(config.margin, mine_triplets)


@LOSSES.register("triplet_hard")
def triplet_hard(config: TrainConfig, n_classes: int) -> nn.Module:
    miner = functools.partial(mine_triplets, hard_rank=config.hard_rank, hard_prob=config.hard_prob,
                              margin=config.margin)
    return TripletLoss(config.margin, miner)


@LOSSES.register("triplet_semihard")
def triplet_semihard(config: TrainConfig, n_classes: int) -> nn.Module:
    return TripletLoss(config.margin, functools.partial(mine_triplets, hard_rank=-1, hard_prob=1.0,
                                                        margin=config.margin))


@LOSSES.register("triplet_batchhard")
def triplet_batchhard(config: TrainConfig, n_classes: int) -> nn.Module:
    return TripletLoss(config.margin, mine_batch_hard)


@LOSSES.register("softmax_arcface")
def softmax_arcface(config: TrainConfig, n_classes: int) -> nn.Module:
    return WeightedSum(softmax(config, n_classes), arcface(config, n_classes), config.loss_weight)


@LOSSES.register("softmax_triplet")
def softmax_triplet(config: TrainConfig, n_classes: int) -> nn.Module:
    return WeightedSum(softmax(config, n_classes), triplet_hard(config, n_classes), config.loss_weight)
