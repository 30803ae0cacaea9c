import os
import time

import numpy as np
import pytest
from PIL import Image

from facenet.data.cache import CacheSpec, cache_size, load_images
from facenet.data.folders import IdentityFolder, Names, PairList, readable
from facenet.data.sampler import ClassBalancedSampler
from facenet.errors import DataError


def make_folder(root, n_ids=4, n_imgs=3, size=20, ext="jpg"):
    rng = np.random.default_rng(0)
    for i in range(n_ids):
        d = root / f"id{i:05d}"
        d.mkdir(parents=True)
        for j in range(n_imgs):
            Image.fromarray(rng.integers(0, 255, (size, size + 4, 3), dtype=np.uint8)).save(d / f"{j:05d}.{ext}")
    return root


# ---------------------------------------------------------------- sampler
@pytest.mark.parametrize("n_per_class,batch", [(1, 10), (2, 7), (3, 4)])
def test_sampler_invariants(n_per_class, batch):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(40), rng.integers(1, 30, 40))
    sampler = ClassBalancedSampler(labels, batch, n_per_class, max_img_per_cls=12, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = sampler.batches()
        assert batches.ndim == 2 and len(batches) > 0, "no batch"
        used = np.concatenate(batches)
        assert len(used) == len(set(used.tolist())), "an image twice in one epoch"
        per_class = np.bincount(labels[used], minlength=40)
        assert per_class.max() <= 12, "max_img_per_cls exceeded"
        for b in batches:
            ids = labels[b]
            assert len(b) == batch * n_per_class
            uniq, counts = np.unique(ids, return_counts=True)
            assert len(uniq) == batch, "identity twice in a batch"
            assert (counts == n_per_class).all(), "each identity brings n_per_class images"
            # groups are contiguous: each identity's images sit together
            assert (ids.reshape(batch, n_per_class) == ids.reshape(batch, n_per_class)[:, :1]).all()


def test_sampler_deterministic_per_epoch_and_differs_across_epochs():
    labels = np.repeat(np.arange(20), 10)
    a, b = ClassBalancedSampler(labels, 5, 2, 100, seed=7), ClassBalancedSampler(labels, 5, 2, 100, seed=7)
    assert all((x == y).all() for x, y in zip(a.batches(), b.batches()))
    b.set_epoch(1)
    assert not all((x == y).all() for x, y in zip(a.batches(), b.batches()))


def test_sampler_respects_indices_subset():
    labels = np.repeat(np.arange(6), 4)
    keep = np.array([i for i in range(len(labels)) if i % 4 != 0])
    s = ClassBalancedSampler(labels, 3, 1, 100, seed=0, indices=keep)
    used = np.concatenate(s.batches())
    assert set(used.tolist()) <= set(keep.tolist())


def test_sampler_batches_carry_their_seed():
    s = ClassBalancedSampler(np.repeat(np.arange(8), 4), 4, 2, 100, seed=3)
    s.set_epoch(2)
    batches = list(s)
    assert [b.seed for b in batches] == [(3, 2, i) for i in range(len(batches))]
    assert all((b.indices == ref).all() for b, ref in zip(batches, s.batches()))


def reference_batches(sampler: ClassBalancedSampler) -> list[np.ndarray]:
    """The first, list-of-groups version of the plan, kept as the reference of the vectorised one."""
    rng = np.random.default_rng([sampler.seed, sampler.epoch])
    k, groups, owner = sampler.n_per_class, [], []
    for c, idx in enumerate(sampler.by_class):
        idx = rng.permutation(idx)[: sampler.max_img_per_cls]
        n = len(idx) // k
        groups += [idx[i * k:(i + 1) * k] for i in range(n)]
        owner += [c] * n
    batches, current, seen = [], [], set()
    for g in rng.permutation(len(groups)):
        if owner[g] in seen:
            continue
        current.append(groups[g])
        seen.add(owner[g])
        if len(current) == sampler.batch_size:
            batches.append(np.concatenate(current))
            current, seen = [], set()
    return batches


@pytest.mark.parametrize("seed", range(6))
def test_sampler_plan_is_the_reference_plan(seed):
    """Same seed, same batches as before the plan became one array: runs resume and reproduce alike."""
    rng = np.random.default_rng(seed)
    n_ids = int(rng.integers(3, 60))
    labels = rng.integers(0, n_ids, int(rng.integers(20, 800)))
    keep = np.sort(rng.choice(len(labels), int(len(labels) * 0.9), replace=False))
    sampler = ClassBalancedSampler(labels, int(rng.integers(1, n_ids + 1)), int(rng.integers(1, 4)),
                                   int(rng.integers(1, 40)), seed=seed, indices=keep)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        plan, ref = sampler.batches(), reference_batches(sampler)
        assert plan.dtype == np.int64 and len(plan) == len(ref)
        assert all((row == r).all() for row, r in zip(plan, ref))


def test_names_hold_paths_in_one_buffer():
    items = ["id00000/00000.jpg", "idé/ü.png", ""]
    names = Names(items)
    assert len(names) == 3 and list(names) == items and names == items and names[-2] == "idé/ü.png"
    assert names[1:] == items[1:] and isinstance(names.blob, bytes) and names.offsets.dtype == np.int64
    with pytest.raises(IndexError):
        names[3]


# ---------------------------------------------------------------- listing and pairs
def test_identity_folder_labels_follow_sorted_names(tmp_path):
    make_folder(tmp_path / "t", n_ids=3, n_imgs=2)
    (tmp_path / "t" / "id00001" / "notes.txt").write_text("not an image")
    f = IdentityFolder.scan(tmp_path / "t")
    assert f.classes == ["id00000", "id00001", "id00002"]
    assert f.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert f.paths[0] == "id00000/00000.jpg"


@pytest.mark.parametrize("setup,message", [
    (lambda r: None, "does not exist"),
    (lambda r: r.mkdir(), "no identity sub-folders"),
    (lambda r: (r / "id00000").mkdir(parents=True), "holds no .jpg/.png images"),
])
def test_identity_folder_errors(tmp_path, setup, message):
    root = tmp_path / "train"
    setup(root)
    with pytest.raises(DataError, match=message):
        IdentityFolder.scan(root)


def test_pair_list_unique_images(tmp_path):
    root = make_folder(tmp_path / "val", n_ids=2, n_imgs=2)
    (root / "pairs.csv").write_text("1,id00000/00000.jpg,id00000/00001.jpg\n0,id00000/00000.jpg,id00001/00000.jpg\n")
    p = PairList.read(root, "pairs.csv")
    assert p.images == ["id00000/00000.jpg", "id00000/00001.jpg", "id00001/00000.jpg"]
    assert p.left.tolist() == [0, 0] and p.right.tolist() == [1, 2] and p.labels.tolist() == [1, 0]


@pytest.mark.parametrize("content,message", [
    ("1,id00000/00000.jpg,id00000/missing.jpg\n", "not found"),
    ("1,id00000/00000.jpg\n", "malformed line"),
    ("2,id00000/00000.jpg,id00000/00001.jpg\n", "must be 0 or 1"),
    ("\n\n", "has no lines"),
    ("1,id00000/00000.jpg,../outside.jpg\n", "outside"),
])
def test_pair_list_errors(tmp_path, content, message):
    root = make_folder(tmp_path / "val", n_ids=1, n_imgs=2)
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.jpg")
    (root / "pairs.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        PairList.read(root, "pairs.csv")


# ---------------------------------------------------------------- cache
def test_cache_decodes_once_and_is_reused(tmp_path):
    root = make_folder(tmp_path / "t", n_ids=2, n_imgs=3, ext="png")
    f = IdentityFolder.scan(root)
    cache = tmp_path / "cache"
    first = load_images(root, f.paths, 16, CacheSpec(cache))
    assert first.array.shape == (6, 16, 16, 3) and first.array.dtype == np.uint8 and first.bad == []
    mtime = first.path.stat().st_mtime_ns
    second = load_images(root, f.paths, 16, CacheSpec(cache))
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime, "cache rebuilt"
    assert np.array_equal(first.array, second.array)
    # the cached pixels are the resized image (shorter side to 16, centre crop)
    ref = Image.open(root / f.paths[0]).convert("RGB").resize((19, 16), Image.BILINEAR).crop((1, 0, 17, 16))
    assert np.array_equal(np.asarray(ref), first.array[0])


def test_cache_rebuilt_when_a_file_changes(tmp_path):
    root = make_folder(tmp_path / "t", n_ids=2, n_imgs=2, ext="png")
    f = IdentityFolder.scan(root)
    first = load_images(root, f.paths, 12, CacheSpec(tmp_path / "c"))
    old_pixels = np.array(first.array[1])
    Image.new("RGB", (20, 20), (255, 0, 0)).save(root / f.paths[1])
    os.utime(root / f.paths[1], ns=(time.time_ns(), time.time_ns() + 10**9))
    second = load_images(root, f.paths, 12, CacheSpec(tmp_path / "c"))
    assert second.path != first.path
    assert not first.path.exists(), "stale cache left behind"
    assert (second.array[1] == [255, 0, 0]).all() and not np.array_equal(old_pixels, second.array[1])
    # another size is a separate cache entry
    assert load_images(root, f.paths, 8, CacheSpec(tmp_path / "c")).array.shape[1] == 8
    assert second.path.exists()


def test_cache_marks_unreadable_files(tmp_path):
    root = make_folder(tmp_path / "t", n_ids=2, n_imgs=2)
    (root / "id00001" / "00001.jpg").write_bytes(b"\xff\xd8\xff truncated")
    f = IdentityFolder.scan(root)
    images = load_images(root, f.paths, 12, CacheSpec(tmp_path / "c"))
    assert images.bad == [3]
    with pytest.warns(UserWarning, match="00001.jpg"):
        assert readable(images, f).tolist() == [0, 1, 2]


def test_cache_shared_by_concurrent_processes(tmp_path):
    """Two processes asking at once: one builds, the other waits and maps the same file."""
    import multiprocessing as mp

    root = make_folder(tmp_path / "t", n_ids=3, n_imgs=4)
    f = IdentityFolder.scan(root)
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        paths = pool.starmap(_cache_path, [(root, f.paths, tmp_path / "c")] * 2)
    assert paths[0] == paths[1]
    assert len(list((tmp_path / "c").glob("*.npy"))) == 1


def _cache_path(root, paths, cache):
    return str(load_images(root, paths, cache_size(16), CacheSpec(cache)).path)
