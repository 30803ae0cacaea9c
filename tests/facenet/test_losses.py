"""Every registered loss: forward/backward, and agreement with a slow brute-force reference
(Python loops over samples), in the style of pytorch-metric-learning's tests."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from facenet.config import TrainConfig
from facenet.losses import (LOSSES, ArcMargin, MarginSoftmax, SoftmaxLoss, TripletLoss, WeightedSum, build_loss,
                            compact, mine_batch_hard, mine_triplets, squared_distances, triplet_margin_loss)
from facenet.registry import UnknownName

DIM, CLASSES = 16, 10
TRIPLET_LOSSES = ["triplet", "triplet_hard", "triplet_semihard", "triplet_batchhard"]


def config(loss: str, **kw) -> TrainConfig:
    return TrainConfig(loss=loss, n_out=DIM, **kw)


def batch(n_ids: int = 5, per_class: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The trainer's layout: n_ids distinct identities x per_class images each."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randperm(CLASSES, generator=g)[:n_ids]
    return torch.randn(n_ids * per_class, DIM, generator=g), ids.repeat_interleave(per_class)


# ---------------------------------------------------------------- brute-force references
def rows(t: torch.Tensor) -> list[list[float]]:
    return t.detach().double().tolist()


def dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v))


def unit(u: list[float]) -> list[float]:
    n = math.sqrt(dot(u, u))
    return [a / n for a in u]


def sq_dist(u: list[float], v: list[float]) -> float:
    return sum((a - b) ** 2 for a, b in zip(u, v))


def cross_entropy(logits: list[list[float]], labels: list[int]) -> float:
    total = 0.0
    for row, y in zip(logits, labels):
        top = max(row)
        total += top + math.log(sum(math.exp(v - top) for v in row)) - row[y]
    return total / len(labels)


def ref_softmax(loss: SoftmaxLoss, x: torch.Tensor, y: torch.Tensor) -> float:
    w, b = rows(loss.fc.weight), loss.fc.bias.detach().double().tolist()
    logits = [[dot(xi, w[j]) + b[j] for j in range(len(w))] for xi in rows(x)]
    return cross_entropy(logits, y.tolist())


def ref_margin(loss: MarginSoftmax, x: torch.Tensor, y: torch.Tensor, kind: str, m: float, s: float,
               easy: bool = False) -> float:
    k = loss.classifier.subcenters
    w = [unit(r) for r in rows(loss.classifier.weight)]
    logits = []
    for xi, yi in zip(rows(x), y.tolist()):
        xi = unit(xi)
        row = []
        for c in range(len(w) // k):
            cos = max(dot(xi, w[c * k + j]) for j in range(k))
            if c == yi:
                theta = math.acos(max(-1.0, min(1.0, cos)))
                if kind == "cosface":
                    cos = cos - m
                elif easy:
                    cos = math.cos(theta + m) if cos > 0 else cos
                else:   # past pi, insightface's linear fallback
                    cos = math.cos(theta + m) if theta + m < math.pi else cos - math.sin(math.pi - m) * m
            row.append(s * cos)
        logits.append(row)
    return cross_entropy(logits, y.tolist())


def ref_triplet(x: torch.Tensor, triplets, margin: float) -> float:
    e = [unit(r) for r in rows(x)]
    terms = [max(0.0, sq_dist(e[a], e[p]) - sq_dist(e[a], e[n]) + margin) for a, p, n in zip(*map(list, triplets))]
    return sum(terms) / len(terms)


def ref_allowed(x: torch.Tensor, y: torch.Tensor, a: int, p: int, hard_rank: int, margin: float) -> set[int]:
    """The negatives a hard draw may return for pair (a, p), by docs/DESIGN.md's definition."""
    e = [unit(r) for r in rows(x)]
    others = [j for j in range(len(e)) if y[j] != y[a]]
    if hard_rank >= 0:
        return set(sorted(others, key=lambda j: sq_dist(e[a], e[j]))[:hard_rank])
    d_ap = sq_dist(e[a], e[p])
    band = {j for j in others if d_ap < sq_dist(e[a], e[j]) < d_ap + margin}
    return band or set(others)


def gather_subcenters(loss: MarginSoftmax, classes: torch.Tensor, noise: float = 0.0) -> None:
    """Point every sub-centre of ``classes`` (near) its first one, so a class's best cosine is
    that centre's: lets sub-centre ArcFace reach cos = +-1 and theta near pi."""
    k, w = loss.classifier.subcenters, loss.classifier.weight
    with torch.no_grad():
        for c in classes.tolist():
            w[c * k:(c + 1) * k] = w[c * k] + noise * torch.randn(k, w.shape[1])


def close(value: torch.Tensor, expected: float) -> None:
    torch.testing.assert_close(value.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- every registered loss
def test_registry_holds_the_plan():
    assert set(LOSSES.names()) == {"softmax", "cosface", "amsoftmax", "arcface", "subcenter_arcface", "triplet",
                                   "triplet_hard", "triplet_semihard", "triplet_batchhard", "softmax_arcface",
                                   "softmax_triplet"}
    with pytest.raises(UnknownName, match="arcface"):
        build_loss(config("arcfase"), CLASSES)


@pytest.mark.parametrize("name", LOSSES.names())
def test_forward_backward(name):
    torch.manual_seed(0)
    loss = build_loss(config(name), CLASSES)
    assert loss.min_per_class == (2 if "triplet" in name else 1)
    x, y = batch()
    x.requires_grad_(True)
    value = loss(x, y)
    assert value.shape == () and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in loss.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


# ---------------------------------------------------------------- classification vs reference
def test_softmax_matches_reference():
    loss = build_loss(config("softmax"), CLASSES)
    x, y = batch(seed=1)
    close(loss(x, y), ref_softmax(loss, x, y))


MARGIN_CASES = [("cosface", 0.3, 30.0, False), ("amsoftmax", 0.2, 64.0, False), ("arcface", 0.3, 30.0, False),
                ("arcface", 0.5, 64.0, False), ("arcface", 0.5, 30.0, True), ("subcenter_arcface", 0.5, 30.0, False),
                ("subcenter_arcface", 0.3, 30.0, True)]


@pytest.mark.parametrize("name,m,s,easy", MARGIN_CASES)
def test_margin_losses_match_reference(name, m, s, easy):
    torch.manual_seed(2)
    loss = build_loss(config(name, margin=m, scale=s, easy_margin=easy), CLASSES)
    x, y = batch(seed=3)
    # some samples point almost away from their class (theta near pi: ArcFace's fallback branch)
    gather_subcenters(loss, y[:3], noise=0.02)
    centres = loss.classifier.weight.detach()[y * loss.classifier.subcenters]
    x[:3] = -centres[:3] + 0.02 * torch.randn(3, DIM)
    assert (loss.classifier(x)[range(3), y[:3]] < math.cos(math.pi - m)).all()
    kind = "cosface" if name in ("cosface", "amsoftmax") else "arcface"
    close(loss(x, y), ref_margin(loss, x, y, kind, m, s, easy))


def test_arc_margin_branches():
    m = 0.5
    margin = ArcMargin(m)
    cos = torch.tensor([0.5, -0.2, -0.95])      # theta + m < pi, < pi, > pi
    expected = [math.cos(math.acos(c) + m) for c in cos[:2].tolist()] + [-0.95 - math.sin(math.pi - m) * m]
    torch.testing.assert_close(margin(cos), torch.tensor(expected))
    easy = ArcMargin(m, easy=True)(cos)
    torch.testing.assert_close(easy[1:], cos[1:])


@pytest.mark.parametrize("name", ["arcface", "subcenter_arcface"])
@pytest.mark.parametrize("easy", [False, True])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_arcface_finite_at_cos_plus_minus_one(name, easy, sign):
    """An embedding exactly on (or opposite to) its class centre: cos = +-1, where d acos is infinite."""
    loss = build_loss(config(name, margin=0.5, easy_margin=easy), CLASSES)
    y = torch.tensor([0, 3, 7])
    gather_subcenters(loss, y)
    x = (sign * 2.5 * loss.classifier.weight.detach()[y * loss.classifier.subcenters]).requires_grad_(True)
    assert (loss.classifier(x)[range(3), y] * sign >= 1 - 1e-6).all()
    value = loss(x, y)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(x.grad).all() and torch.isfinite(loss.classifier.weight.grad).all()


def test_margin_math_runs_in_fp32_under_autocast():
    loss = build_loss(config("arcface"), CLASSES)
    x, y = batch(seed=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = loss(x, y)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, loss(x, y))


# ---------------------------------------------------------------- triplets vs reference
def test_triplet_margin_loss_matches_reference():
    x, _ = batch(seed=5)
    g = torch.Generator().manual_seed(0)
    triplets = tuple(torch.randint(len(x), (20,), generator=g) for _ in range(3))
    close(triplet_margin_loss(F.normalize(x), *triplets, 0.3), ref_triplet(x, triplets, 0.3))


@pytest.mark.parametrize("name", TRIPLET_LOSSES)
def test_triplet_losses_match_reference_on_their_triplets(name):
    loss = build_loss(config(name, margin=0.5, hard_rank=3, hard_prob=0.5), CLASSES)
    x, y = batch(n_ids=5, per_class=3, seed=6)
    torch.manual_seed(7)
    value = loss(x, y)
    torch.manual_seed(7)
    triplets = compact(loss.miner(squared_distances(F.normalize(x)), y))
    close(value, ref_triplet(x, triplets, 0.5))


@pytest.mark.parametrize("hard_rank,hard_prob", [(0, 0.0), (1, 1.0), (3, 1.0), (-1, 1.0)])
def test_miner_matches_definition_on_random_batches(hard_rank, hard_prob):
    margin = 0.6
    for seed in range(3):
        x, y = batch(n_ids=4, per_class=3, seed=seed)
        a, p, n = compact(mine_triplets(squared_distances(F.normalize(x)), y, hard_rank, hard_prob, margin))
        pairs = {(i, j) for i in range(len(y)) for j in range(len(y)) if i != j and y[i] == y[j]}
        assert set(zip(a.tolist(), p.tolist())) == pairs and len(a) == len(pairs)
        for ai, pi, ni in zip(a.tolist(), p.tolist(), n.tolist()):
            assert y[ni] != y[ai]
            if hard_prob == 1.0:
                assert ni in ref_allowed(x, y, ai, pi, hard_rank, margin)


def test_batch_hard_matches_reference():
    x, y = batch(n_ids=4, per_class=3, seed=8)
    a, p, n = compact(mine_batch_hard(squared_distances(F.normalize(x)), y))
    e = [unit(r) for r in rows(x)]
    assert a.tolist() == list(range(len(y)))
    for i in range(len(y)):
        pos = [j for j in range(len(y)) if j != i and y[j] == y[i]]
        neg = [j for j in range(len(y)) if y[j] != y[i]]
        assert p[i] == max(pos, key=lambda j: sq_dist(e[i], e[j]))
        assert n[i] == min(neg, key=lambda j: sq_dist(e[i], e[j]))


# ---------------------------------------------------------------- mining on hand-built batches
def on_circle(degrees: list[float]) -> torch.Tensor:
    r = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    return torch.stack([r.cos(), r.sin()], dim=1).float()


# 4 identities x 2 images on the unit circle; each image's nearest other-identity image is known
HAND = on_circle([0, 10, 50, 60, 130, 140, 230, 245])
HAND_LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
HAND_NEAREST = [2, 2, 1, 1, 3, 3, 5, 5]


def hand_mine(**kw):
    return compact(mine_triplets(squared_distances(HAND), HAND_LABELS, **kw))


def test_hard_rank_one_picks_the_most_similar_negative():
    for _ in range(5):
        a, p, n = hand_mine(hard_rank=1, hard_prob=1.0)
        assert a.tolist() == list(range(8)) and p.tolist() == [1, 0, 3, 2, 5, 4, 7, 6]
        assert n.tolist() == HAND_NEAREST


def test_random_negatives_cover_every_other_identity():
    g = torch.Generator().manual_seed(0)
    seen = {i: set() for i in range(8)}
    for _ in range(200):
        triplets = mine_triplets(squared_distances(HAND), HAND_LABELS, hard_rank=1, hard_prob=0, generator=g)
        a, _, n = compact(triplets)
        for ai, ni in zip(a.tolist(), n.tolist()):
            seen[ai].add(ni)
    assert all(seen[i] == {j for j in range(8) if HAND_LABELS[j] != HAND_LABELS[i]} for i in seen)


def test_hard_prob_mixes_hard_and_uniform_draws():
    """hard_prob=0.5, hard_rank=1 picks the nearest with probability 0.5 + 0.5/6."""
    g = torch.Generator().manual_seed(1)
    hits = sum((compact(mine_triplets(squared_distances(HAND), HAND_LABELS, 1, 0.5, generator=g))[2]
                == torch.tensor(HAND_NEAREST)).sum().item() for _ in range(250))
    assert abs(hits / 2000 - (0.5 + 0.5 / 6)) < 0.05


def test_semi_hard_picks_inside_the_margin_band():
    # anchor 0 (0 deg) with its positive at 60 deg (d_ap = 1.0): 30 and 310 deg are harder than the
    # positive, 90 deg (d = 2.0) is inside a 1.5 band, 200 deg (d = 3.88) is outside it
    x, y = on_circle([0, 60, 30, 200, 90, 310]), torch.tensor([0, 0, 1, 1, 2, 2])
    dist = squared_distances(x)
    g = torch.Generator().manual_seed(2)
    for _ in range(20):
        a, p, n = compact(mine_triplets(dist, y, hard_rank=-1, hard_prob=1.0, margin=1.5, generator=g))
        assert n[(a == 0) & (p == 1)].tolist() == [4]
    # a band too thin to hold any negative falls back to uniform over all of them
    picks = {compact(mine_triplets(dist, y, -1, 1.0, 0.5, generator=g))[2][0].item() for _ in range(100)}
    assert picks == {2, 3, 4, 5}


def test_mining_with_a_generator_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    first = hand_mine(hard_rank=2, hard_prob=0.5, generator=torch.Generator().manual_seed(3))
    again = hand_mine(hard_rank=2, hard_prob=0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(u, v) for u, v in zip(first, again))


# ---------------------------------------------------------------- combined
@pytest.mark.parametrize("name", ["softmax_arcface", "softmax_triplet"])
@pytest.mark.parametrize("weight", [0.7, 0.5])
def test_combined_is_the_weighted_sum_of_its_parts(name, weight):
    loss = build_loss(config(name, loss_weight=weight), CLASSES)
    assert isinstance(loss, WeightedSum) and isinstance(loss.first, SoftmaxLoss)
    assert isinstance(loss.second, MarginSoftmax if name == "softmax_arcface" else TripletLoss)
    x, y = batch(seed=9)
    torch.manual_seed(10)
    value = loss(x, y)
    torch.manual_seed(10)
    first, second = loss.first(x, y), loss.second(x, y)
    torch.testing.assert_close(value, weight * first + (1 - weight) * second)
    assert loss.min_per_class == max(loss.first.min_per_class, loss.second.min_per_class)
