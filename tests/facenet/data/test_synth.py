"""The synthetic face set: course layout, pair lists, determinism, two training domains."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facenet.data.synth import SPLITS, split_counts, synthesize
from facenet.data.synth_faces import DOMAINS, sample_face, sample_nuisance
from facenet.data.synth_paint import HAIR_STYLES, render_face
from facenet.errors import DataError

SPLIT_NAMES = [name for name, *_ in SPLITS]
# val: 2 identities x 4 images -> 12 same-person and 16 different-person pairs exist; 10 asks for 5 + 5,
# while test asks for 40, more than exist, and gets all 28
ARGS = dict(identities=12, images_per_identity=4, size=32, val_pairs=10, test_pairs=40)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "data"
    return root, synthesize(root, seed=3, **ARGS)


def read_pairs(path: Path) -> list[tuple[int, str, str]]:
    rows = []
    for line in path.read_text().splitlines():
        label, a, b = line.split(",")
        rows.append((int(label), a, b))
    return rows


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout(made):
    root, summary = made
    assert sorted(p.name for p in root.iterdir()) == sorted(SPLIT_NAMES)     # no temporary folder left behind
    counts = split_counts(12)
    seen: set[str] = set()
    for name in SPLIT_NAMES:
        folders = sorted(p.name for p in (root / name).iterdir() if p.is_dir())
        assert len(folders) == counts[name] == summary[f"{name}_identities"]
        assert not seen & set(folders), "identities must not be shared between splits"
        seen |= set(folders)
        for folder in folders:
            files = sorted(p.name for p in (root / name / folder).iterdir())
            assert files == [f"{i:05d}.jpg" for i in range(4)]
            with Image.open(root / name / folder / files[0]) as im:
                assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (32, 32))
    assert summary["images"] == 12 * 4 and summary["seconds"] >= 0


@pytest.mark.parametrize("split, expected", [("val", (5, 5)), ("test", (12, 16))])
def test_pair_lists(made, split, expected):
    root, summary = made
    rows = read_pairs(root / split / f"{split}_pairs.csv")
    assert len(rows) == summary[f"{split}_pairs"] == sum(expected)
    assert (sum(r[0] == 1 for r in rows), sum(r[0] == 0 for r in rows)) == expected
    assert len({frozenset((a, b)) for _, a, b in rows}) == len(rows), "a pair is repeated"
    for label, a, b in rows:
        assert a != b
        for p in (a, b):
            assert not Path(p).is_absolute() and (root / split / p).is_file(), p
        assert label == int(a.split("/")[0] == b.split("/")[0])


def test_same_seed_same_bytes_other_seed_other_faces(made, tmp_path):
    root, _ = made
    again = tmp_path / "again"
    synthesize(again, seed=3, progress=True, **ARGS)
    assert file_bytes(again) == file_bytes(root)
    synthesize(tmp_path / "other", seed=4, **ARGS)
    first, other = file_bytes(root), file_bytes(tmp_path / "other")
    images = [k for k in first if k.endswith(".jpg")]
    assert sum(first[k] != other[k] for k in images) == len(images)


def test_training_domains_differ(made):
    """train2's backgrounds are more colourful; its identities span a wider range of skin tones."""
    root, _ = made

    def border_saturation(split: str) -> float:
        ims = np.stack([np.asarray(Image.open(p), np.float32) for p in sorted((root / split).rglob("*.jpg"))])
        border = np.concatenate([ims[:, :4].reshape(len(ims), -1, 3), ims[:, :, :4].reshape(len(ims), -1, 3)], 1)
        return float((border.max(-1) - border.min(-1)).mean())

    assert border_saturation("train2") > 1.5 * border_saturation("train1")
    rng = np.random.default_rng(0)
    spread = {name: np.std([np.mean(sample_face(rng, DOMAINS[name]).skin) for _ in range(200)])
              for name in ("train1", "train2")}
    assert spread["train2"] > 1.5 * spread["train1"]


@pytest.mark.parametrize("style", HAIR_STYLES.names())
def test_every_hair_style_renders(style):
    rng = np.random.default_rng(1)
    face = sample_face(rng, DOMAINS["train2"])
    styled = dataclasses.replace(face, hair_style=style)
    nuisance = sample_nuisance(rng, DOMAINS["train2"], 32)
    img = render_face(styled, nuisance, 32, np.random.default_rng(2))
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and img.std() > 5


def test_split_shares():
    assert split_counts(200) == {"train1": 110, "train2": 50, "val": 20, "test": 20}
    assert split_counts(8) == {"train1": 2, "train2": 2, "val": 2, "test": 2}


@pytest.mark.parametrize("bad, message", [
    ({"identities": 7}, "identities=7 is too few.*at least 2 identities each"),
    ({"images_per_identity": 1}, "at least 2 images"),
    ({"size": 8}, "too small"),
    ({"seed": -1}, "seed >= 0"),
    ({"val_pairs": 0}, "at least 2 pairs"),
])
def test_bad_arguments_are_clear_errors_and_write_nothing(tmp_path, bad, message):
    with pytest.raises(DataError, match=message):
        synthesize(tmp_path / "d", **{**ARGS, **bad})
    assert not (tmp_path / "d").exists()
    assert issubclass(DataError, ValueError)


def test_refuses_to_overwrite(made, tmp_path):
    root, _ = made
    with pytest.raises(DataError, match="already holds train1, train2, val, test"):
        synthesize(root, **ARGS)
