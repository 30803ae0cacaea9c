import numpy as np
import pytest
import torch
from PIL import Image

from facenet.data.cache import CacheSpec
from facenet.data.folders import PairList
from facenet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ToFloat, center_crop, normalize_
from facenet.eval.evaluate import Verifier, eer, pair_scores, write_scores


def eer_course(labels, scores):
    """docs/DESIGN.md's formula, spelled out as the course writes it."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1 - tpr
    i = np.nanargmin(np.absolute(fnr - fpr))
    return max(fpr[i], fnr[i]) * 100


def eer_bruteforce(labels, scores):
    """The course's definition, by walking every threshold by hand."""
    thresholds = np.concatenate([[np.inf], np.sort(np.unique(scores))[::-1]])
    best = None
    for t in thresholds:
        accept = scores >= t
        fpr = (accept & (labels == 0)).sum() / max((labels == 0).sum(), 1)
        fnr = (~accept & (labels == 1)).sum() / max((labels == 1).sum(), 1)
        if best is None or abs(fnr - fpr) < best[0]:
            best = (abs(fnr - fpr), max(fpr, fnr) * 100)
    return best[1]


@pytest.mark.parametrize("seed", range(5))
def test_eer_matches_definition_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = rng.normal(size=300) + labels * rng.uniform(0, 2)
    assert eer(labels, scores) == eer_course(labels, scores)
    # the formula reads sklearn's thinned ROC; walking every threshold lands within a few pairs of it
    assert eer(labels, scores) == pytest.approx(eer_bruteforce(labels, scores), abs=2.0)


def test_eer_edge_cases():
    labels = np.array([0, 0, 1, 1])
    assert eer(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 0.0          # perfect separation
    assert eer(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 100.0        # perfectly wrong
    # all scores equal: the ROC has only the (0,0) and (1,1) points; the formula gives 100
    assert eer(labels, np.full(4, 0.5)) == eer_bruteforce(labels, np.full(4, 0.5)) == 100.0
    assert 0 <= eer(np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4])) <= 100


def test_pair_scores_are_cosines():
    emb = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    pairs = PairList(root=None, labels=np.array([1, 0]), left=np.array([0, 3]), right=np.array([4, 1]), images=[])
    s = pair_scores(emb, pairs)
    assert s == pytest.approx([float(emb[0] @ emb[4]), float(emb[3] @ emb[1])], abs=1e-6)


def test_center_crop_on_tensors_and_memmaps():
    x = np.arange(2 * 6 * 6 * 3, dtype=np.uint8).reshape(2, 6, 6, 3)
    assert (center_crop(x, 4) == x[:, 1:5, 1:5]).all()
    assert torch.equal(center_crop(torch.from_numpy(x), 4), torch.from_numpy(x[:, 1:5, 1:5]))


@pytest.mark.parametrize("channels_last", [False, True])
def test_to_float_and_normalize_match_the_formula(channels_last):
    x = torch.randint(0, 256, (4, 6, 5, 3), dtype=torch.uint8)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    reference = (x.permute(0, 3, 1, 2).float() / 255 - mean) / std
    to_float = ToFloat(channels_last)
    y = normalize_(to_float(x))
    torch.testing.assert_close(y, reference)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert y.shape == (4, 3, 6, 5) and y.is_contiguous(memory_format=fmt)
    z = to_float(x.flip(0))                      # the next batch reuses the buffer ...
    assert z.data_ptr() == y.data_ptr()
    torch.testing.assert_close(z, x.flip(0).permute(0, 3, 1, 2).float() / 255)
    assert to_float(x[:2]).shape == (2, 3, 6, 5)   # ... until the shape changes


def test_score_file_format(tmp_path):
    root = tmp_path / "test"
    for i in range(2):
        (root / f"id{i}").mkdir(parents=True)
        for j in range(2):
            Image.new("RGB", (20, 20), (i * 200, j * 100, 50)).save(root / f"id{i}" / f"{j}.jpg")
    (root / "test_pairs.csv").write_text("1,id0/0.jpg,id0/1.jpg\n0,id0/0.jpg,id1/1.jpg\n")
    pairs = PairList.read(root, "test_pairs.csv")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 8))
    scores = Verifier(pairs, 16, CacheSpec(tmp_path / "cache")).scores(model, torch.device("cpu"))
    write_scores(tmp_path / "out" / "scores.txt", scores, pairs)
    lines = (tmp_path / "out" / "scores.txt").read_text().splitlines()
    assert len(lines) == 2
    for line, (label, a, b), s in zip(lines, pairs.lines, scores):
        score, lab, p1, p2 = line.split(",")
        assert (lab, p1, p2) == (label, a, b)
        assert len(score.split(".")[1]) == 6 and float(score) == pytest.approx(s, abs=1e-6)
        assert -1 <= float(score) <= 1
