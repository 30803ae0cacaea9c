"""Training losses, by name: classification (softmax, CosFace, ArcFace, sub-centre ArcFace),
triplet variants, and weighted sums of two of them.

Every loss is an ``nn.Module`` called as ``loss(embeddings (B, D), labels (B,)) -> scalar`` and
owns its classifier weights (they are not part of the model, so they never count toward the
parameter cap). ``min_per_class`` says how many images of each identity a batch must hold.

Triplet losses work on L2-normalised embeddings with the squared Euclidean distance
``|a - b|^2 = 2 - 2 cos(a, b)`` (the course trainer's choice; ranking by it is ranking by cosine
similarity), so margins live on a [0, 4] scale. Choosing triplets (mining) is separate from
the loss: a miner maps a detached distance matrix and the labels to index tensors
``(anchor, positive, negative)``, and ``triplet_margin_loss`` scores them. Mining draws from
torch's global RNG (seeded by the trainer) unless given a generator.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import TrainConfig
from .errors import ConfigError
from .registry import Registry

LOSSES: Registry = Registry("loss")

Triplets = tuple[Tensor, Tensor, Tensor]            # anchor, positive, negative indices
Miner = Callable[..., Triplets]                     # (dist, labels, generator=None) -> Triplets

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
def squared_distances(x: Tensor) -> Tensor:
    """All pairwise squared Euclidean distances of L2-normalised rows: 2 - 2 cos."""
    return (2 - 2 * x @ x.T).clamp_min(0)


def anchor_positive_pairs(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Every ordered (anchor, positive) pair of distinct same-identity images whose anchor has at
    least one other-identity image in the batch to serve as negative."""
    same = labels[:, None] == labels[None, :]
    has_negative = (~same).any(dim=1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return torch.nonzero(same & ~eye & has_negative[:, None], as_tuple=True)


def pick_uniform(allowed: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One column per row, uniformly among that row's True entries (each row needs one)."""
    keys = torch.rand(allowed.shape, generator=generator, device=allowed.device)
    return torch.where(allowed, keys, -1.0).argmax(dim=1)


def rank_among(dist: Tensor, candidates: Tensor) -> Tensor:
    """Rank (0 = nearest) of each candidate column by distance within its row; non-candidates last."""
    masked = dist.masked_fill(~candidates, math.inf)
    return masked.argsort(dim=1).argsort(dim=1)


def mine_triplets(dist: Tensor, labels: Tensor, hard_rank: int = 0, hard_prob: float = 0.0, margin: float = 0.0,
                  generator: torch.Generator | None = None) -> Triplets:
    """One negative per (anchor, positive) pair among the other identities' images in the batch.

    With probability ``hard_prob`` the negative is hard: uniform among the ``hard_rank`` images
    nearest the anchor (0 acts as 1), or, for ``hard_rank < 0``, semi-hard: farther than the
    positive but within ``margin`` of it (uniform among all when none is). Otherwise uniform
    among all. ``hard_prob = 0`` is random-negative mining.
    """
    anchor, positive = anchor_positive_pairs(labels)
    other = labels[:, None] != labels[None, :]
    candidates = other[anchor]
    if hard_rank < 0:
        row, d_ap = dist[anchor], dist[anchor, positive][:, None]
        hard = candidates & (row > d_ap) & (row < d_ap + margin)
        hard = torch.where(hard.any(dim=1, keepdim=True), hard, candidates)
    else:
        hard = (other & (rank_among(dist, other) < max(hard_rank, 1)))[anchor]
    use_hard = torch.rand(len(anchor), generator=generator, device=dist.device) < hard_prob
    negative = pick_uniform(torch.where(use_hard[:, None], hard, candidates), generator)
    return anchor, positive, negative


def mine_batch_hard(dist: Tensor, labels: Tensor, generator: torch.Generator | None = None) -> Triplets:
    """Hermans et al.: for each anchor, its farthest positive and nearest negative. Deterministic;
    ``generator`` is accepted (and unused) so every miner has one signature."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positives, negatives = same & ~eye, ~same
    (anchor,) = torch.nonzero(positives.any(dim=1) & negatives.any(dim=1), as_tuple=True)
    positive = dist.masked_fill(~positives, -math.inf).argmax(dim=1)[anchor]
    negative = dist.masked_fill(~negatives, math.inf).argmin(dim=1)[anchor]
    return anchor, positive, negative


# ---------------------------------------------------------------- triplets: loss
def triplet_margin_loss(x: Tensor, anchor: Tensor, positive: Tensor, negative: Tensor, margin: float) -> Tensor:
    """Mean of max(0, |a - p|^2 - |a - n|^2 + margin) over the triplets (0 when there are none)."""
    d_ap = (x[anchor] - x[positive]).pow(2).sum(dim=1)
    d_an = (x[anchor] - x[negative]).pow(2).sum(dim=1)
    return F.relu(d_ap - d_an + margin).sum() / max(len(anchor), 1)


class TripletLoss(nn.Module):
    """Triplet loss on L2-normalised embeddings, with triplets chosen by ``miner``."""

    min_per_class = 2

    def __init__(self, margin: float, miner: Miner, generator: torch.Generator | None = None):
        super().__init__()
        self.margin, self.miner, self.generator = margin, miner, generator

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        with fp32(embeddings.device):
            x = F.normalize(embeddings.float())
            triplets = self.miner(squared_distances(x.detach()), labels, generator=self.generator)
            return triplet_margin_loss(x, *triplets, self.margin)

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
