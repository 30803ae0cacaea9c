"""Synthetic faces in the course layout: the embedded default data set (the course's faces are private).

An identity is a vector of face parameters (shape, skin, eyes, brows, nose, mouth, hair); every image
of it adds nuisance on top (pose, lighting, expression, background, blur, noise, glasses). Faces are
painted as soft-edged shapes in a face frame with whole-image numpy arrays at twice the size, then
box-downsampled. The two training domains differ as the course's do: train1 draws identities from
narrow ranges under mild, studio-like conditions; train2 from wide ranges under harsher ones; val and
test identities come from both. Each identity, image and pair list has its own numpy Generator keyed
by (seed, purpose, split, identity, image), so the bytes depend on the arguments only and any identity
can be rendered alone, in any order or process.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from .synth_faces import DOMAINS, sample_face, sample_nuisance
from .synth_paint import render_face

JPEG_QUALITY = 92
MIN_IDENTITIES = 8

# (name, share of the identities, domain of its identities; None = drawn from both per identity)
SPLITS: tuple[tuple[str, float, str | None], ...] = (
    ("train1", 0.55, "train1"), ("train2", 0.25, "train2"), ("val", 0.10, None), ("test", 0.10, None))


# ---------------------------------------------------------------- the data set
def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


_IDENTITY, _IMAGE, _PAIRS = 0, 1, 2          # purposes in the generator keys
_MIXED = ("train1", "train2")                # what val and test draw from


def identity_images(seed: int, split: int, identity: int, count: int, size: int) -> list[np.ndarray]:
    """The ``count`` images of one identity of split number ``split`` (index into SPLITS).

    In the mixed splits the identity comes from one domain and each image's conditions from either,
    so the conditions say nothing about who is in the picture."""
    rng = _rng(seed, _IDENTITY, split, identity)
    fixed = SPLITS[split][2]
    face = sample_face(rng, DOMAINS[fixed or _MIXED[int(rng.integers(2))]])
    images = []
    for i in range(count):
        r = _rng(seed, _IMAGE, split, identity, i)
        domain = DOMAINS[fixed or _MIXED[int(r.integers(2))]]
        images.append(render_face(face, sample_nuisance(r, domain, size), size, r))
    return images


def split_counts(identities: int) -> dict[str, int]:
    """Identities per split: about 55/25/10/10 %, at least 2 each."""
    if identities < MIN_IDENTITIES:
        raise DataError(f"identities={identities} is too few: the 4 splits (train1, train2, val, test) need at least "
                        f"2 identities each; use --identities {MIN_IDENTITIES} or more")
    counts = {name: max(2, round(identities * share)) for name, share, _ in SPLITS[1:]}
    return {SPLITS[0][0]: identities - sum(counts.values()), **counts}


def _draw_pairs(rng: np.random.Generator, per_identity: int, identities: int, want: int,
                same: bool) -> list[tuple[int, int, int, int]]:
    """Distinct unordered image pairs (identity, image, identity, image) of one person or of two."""
    k, n = per_identity, identities
    pool = n * k * (k - 1) // 2 if same else n * (n - 1) // 2 * k * k
    want = min(want, pool)
    found: dict[tuple[int, int], tuple[int, int, int, int]] = {}
    while len(found) < want:
        batch = max(64, 2 * want)
        g1 = rng.integers(n, size=batch)
        g2 = g1 if same else (g1 + rng.integers(1, n, size=batch)) % n
        i1 = rng.integers(k, size=batch)
        i2 = rng.integers(k - 1, size=batch) if same else rng.integers(k, size=batch)
        if same:
            i2 = i2 + (i2 >= i1)
        for p in zip(g1.tolist(), i1.tolist(), g2.tolist(), i2.tolist()):
            a, b = p[0] * k + p[1], p[2] * k + p[3]
            found.setdefault((min(a, b), max(a, b)), p)
            if len(found) == want:
                break
    return list(found.values())


def image_name(i: int) -> str:
    return f"{i:05d}.jpg"


def make_pairs(rng: np.random.Generator, folders: list[str], per_identity: int,
               count: int) -> list[tuple[int, str, str]]:
    """About ``count`` (label, path1, path2) pairs, half same-person, none repeated, none of an image
    with itself; fewer where the split holds fewer distinct pairs."""
    pos = _draw_pairs(rng, per_identity, len(folders), (count + 1) // 2, same=True)
    neg = _draw_pairs(rng, per_identity, len(folders), count // 2, same=False)
    rows = [(1, *p) for p in pos] + [(0, *p) for p in neg]
    return [(label, f"{folders[g1]}/{image_name(i1)}", f"{folders[g2]}/{image_name(i2)}")
            for label, g1, i1, g2, i2 in (rows[j] for j in rng.permutation(len(rows)))]


def _write_identity(folder: Path, seed: int, split: int, identity: int, count: int, size: int) -> None:
    folder.mkdir(parents=True)
    for i, img in enumerate(identity_images(seed, split, identity, count, size)):
        Image.fromarray(img).save(folder / image_name(i), quality=JPEG_QUALITY)


def synthesize(out: str | Path, identities: int = 200, images_per_identity: int = 20, size: int = 64, seed: int = 0,
               val_pairs: int = 600, test_pairs: int = 600, progress: bool = False) -> dict:
    """Write synthetic faces in the course layout under ``out``: train1/, train2/, val/ + val_pairs.csv,
    test/ + test_pairs.csv (real labels). Nothing is left half-written: the splits are built in a
    hidden temporary folder inside ``out`` and moved into place at the end. Returns identities per
    split, images, pairs per list and seconds."""
    start = time.perf_counter()
    out = Path(out)
    counts = split_counts(identities)
    if images_per_identity < 2:
        raise DataError(f"images_per_identity={images_per_identity}: same-person pairs need at least 2 images")
    if size < 16:
        raise DataError(f"size={size} px is too small to draw a face; use 16 or more")
    if seed < 0:
        raise DataError(f"seed={seed}: use a seed >= 0")
    if min(val_pairs, test_pairs) < 2:
        raise DataError(f"val_pairs={val_pairs}, test_pairs={test_pairs}: each list needs at least 2 pairs "
                        f"(one of each label)")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: is a file; choose a folder to write the data set into")
    taken = [name for name, *_ in SPLITS if (out / name).exists()]
    if taken:
        raise DataError(f"{out}: already holds {', '.join(taken)}; remove them or choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(identities - 1)))
    tmp = Path(tempfile.mkdtemp(prefix=".synth-partial-", dir=out))
    try:
        jobs, folders, first = [], {}, 0
        for split, (name, _, _) in enumerate(SPLITS):
            folders[name] = [f"id{first + i:0{width}d}" for i in range(counts[name])]
            jobs += [(tmp / name / folder, seed, split, first + i, images_per_identity, size)
                     for i, folder in enumerate(folders[name])]
            first += counts[name]
        if progress:
            from rich.progress import track

            jobs = track(jobs, description="synthesising faces", transient=True)
        for job in jobs:
            _write_identity(*job)
        summary: dict = {f"{name}_identities": counts[name] for name, *_ in SPLITS}
        summary["images"] = identities * images_per_identity
        for name, want in (("val", val_pairs), ("test", test_pairs)):
            split = [n for n, *_ in SPLITS].index(name)
            rows = make_pairs(_rng(seed, _PAIRS, split), folders[name], images_per_identity, want)
            (tmp / name / f"{name}_pairs.csv").write_text("".join(f"{lab},{a},{b}\n" for lab, a, b in rows))
            summary[f"{name}_pairs"] = len(rows)
        for name, *_ in SPLITS:
            (tmp / name).rename(out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    return summary
