"""The decoded-image cache: formats, the auto choice, resumable and disk-full-safe builds, where it lives."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from facenet.data import cache, cache_entry
from facenet.data.cache import CacheSpec, cache_size, default_cache_dir, load_images
from facenet.data.cache_formats import BatchedJpeg, PackedJpeg, RawImages, gpu_decode_ok
from facenet.data.folders import IdentityFolder, PairList
from facenet.data.loader import BatchLoader, cut
from facenet.data.sampler import Batch, ClassBalancedSampler
from facenet.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def train1(synth_data) -> IdentityFolder:
    return IdentityFolder.scan(synth_data / "train1")


def entry_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def nearest_window(crop: np.ndarray, image: np.ndarray) -> tuple[int, int, bool, float]:
    """(top, left, mirrored, mean abs error) of the window of ``image`` closest to ``crop``."""
    r, best = crop.shape[0], None
    for t in range(image.shape[0] - r + 1):
        for l in range(image.shape[1] - r + 1):
            w = image[t:t + r, l:l + r].astype(int)
            for m, cand in ((False, w), (True, w[:, ::-1])):
                err = float(np.abs(cand - crop).mean())
                if best is None or err < best[3]:
                    best = (t, l, m, err)
    return best


# ---------------------------------------------------------------- formats give the same crops
def test_both_formats_cut_the_same_windows_for_the_same_seed(train1, tmp_path):
    raw = load_images(train1.root, train1.paths, cache_size(32), CacheSpec(tmp_path, "raw"))
    packed = load_images(train1.root, train1.paths, cache_size(32), CacheSpec(tmp_path, "jpeg"))
    assert isinstance(raw, RawImages) and isinstance(packed, PackedJpeg) and len(raw) == len(packed)
    assert packed.data.nbytes < raw.array.nbytes   # at 37 px JPEG headers weigh; 224 px figures: scale.py
    # the compression error itself, image by image, bounds the error of any window
    whole = np.abs(packed[0:len(packed)].astype(int) - raw.array).mean(axis=(1, 2, 3))
    assert whole.max() < 6, whole.max()
    out = torch.empty(12, 32, 32, 3, dtype=torch.uint8)
    for seed in [(0, 0, 0), (5, 2, 7)]:
        batch = Batch(np.random.default_rng(seed).choice(len(raw), 12, replace=False), seed)
        a, b = cut(raw, batch, 32, 0.5, out).numpy().copy(), cut(packed, batch, 32, 0.5, out).numpy().copy()
        rng = np.random.default_rng(seed)   # the draws cut() makes
        top, left = rng.integers(0, cache_size(32) - 32 + 1, (2, 12))
        mirror = rng.random(12) < 0.5
        for k, i in enumerate(batch.indices):
            assert np.abs(a[k].astype(int) - b[k]).mean() <= 2 * whole[i] + 1
            # the jpeg crop's closest window in the raw image is the one drawn: same geometry
            t, l, m, err = nearest_window(b[k], raw.array[i])
            assert (t, l, m) == (top[k], left[k], mirror[k]) and err <= 2 * whole[i] + 1


def test_batched_decoder_cuts_what_the_thread_decoder_cuts(train1, tmp_path):
    """The GPU path's code (one decode_jpeg call per batch, one gather for every window) run on the CPU;
    on CUDA only the decoder differs (nvJPEG), which this machine cannot run."""
    packed = load_images(train1.root, train1.paths, cache_size(32), CacheSpec(tmp_path, "jpeg"))
    assert packed.for_device(torch.device("cpu")) is packed and not gpu_decode_ok("cpu")
    batched = BatchedJpeg(packed, "cpu")
    batch = Batch(np.arange(10) * 3, (1, 2, 3))
    a = cut(packed, batch, 28, 0.5, torch.empty(10, 28, 28, 3, dtype=torch.uint8)).numpy().astype(int)
    b = cut(batched, batch, 28, 0.5, torch.empty(10, 28, 28, 3, dtype=torch.uint8)).numpy().astype(int)
    assert np.abs(a - b).max() <= 2   # both are libjpeg-turbo: identical here, allow rounding elsewhere


def test_loader_threads_decode_the_same_batches_as_the_serial_loader(train1, tmp_path):
    packed = load_images(train1.root, train1.paths, cache_size(32), CacheSpec(tmp_path, "jpeg"))
    sampler = ClassBalancedSampler(train1.labels, 6, 2, 100, seed=4)
    serial = BatchLoader(packed, train1.labels, sampler, 32, 0.5, threads=0)
    serial = [(x.clone(), y.clone()) for x, y in serial]
    loader = BatchLoader(packed, train1.labels, sampler, 32, 0.5, threads=2)
    threaded = [(x.clone(), y.clone()) for x, y in loader]
    loader.close()
    assert len(serial) == len(threaded) > 3
    assert all(torch.equal(x, sx) and torch.equal(y, sy) for (x, y), (sx, sy) in zip(threaded, serial))


# ---------------------------------------------------------------- auto
def test_auto_picks_the_compressed_format_when_the_budget_is_small(train1, tmp_path, monkeypatch):
    raw_bytes = len(train1.paths) * cache_size(32) ** 2 * 3
    small = load_images(train1.root, train1.paths, cache_size(32), CacheSpec(tmp_path / "a", budget_gb=raw_bytes / 2e9))
    big = load_images(train1.root, train1.paths, cache_size(32), CacheSpec(tmp_path / "b", budget_gb=raw_bytes / 0.5e9))
    assert small.format == "jpeg" and big.format == "raw"
    monkeypatch.setenv("FACESEARCH_CACHE_BUDGET", f"{raw_bytes // 2000}K")
    assert load_images(train1.root, train1.paths, cache_size(32), CacheSpec(tmp_path / "c")).format == "jpeg"
    monkeypatch.setenv("FACESEARCH_CACHE_BUDGET", "lots")
    with pytest.raises(ConfigError, match="FACESEARCH_CACHE_BUDGET='lots'"):
        load_images(train1.root, train1.paths, cache_size(32), CacheSpec(tmp_path / "d"))
    # a complete cache is reused whatever the budget says now; an explicit format is honoured
    monkeypatch.setenv("FACESEARCH_CACHE_BUDGET", "1T")
    assert load_images(train1.root, train1.paths, cache_size(32), CacheSpec(tmp_path / "a")).format == "jpeg"
    assert load_images(train1.root, train1.paths, cache_size(32), CacheSpec(tmp_path / "a", "raw")).format == "raw"
    with pytest.raises(ConfigError, match="unknown cache format 'png'"):
        load_images(train1.root, train1.paths, cache_size(32), CacheSpec(tmp_path / "a", "png"))


def test_training_runs_on_the_compressed_format(tiny_config, tmp_path):
    from facenet import fit

    config = tiny_config.replace(cache_dir=str(tmp_path / "cache"), cache_format="jpeg", epochs=1, workers=1)
    result = fit(config, log=lambda m: None)
    assert np.isfinite(result.best_val_eer)
    assert {p.suffix for p in (tmp_path / "cache").iterdir()} >= {".bin", ".json"}
    assert not list((tmp_path / "cache").glob("*.raw.*"))


# ---------------------------------------------------------------- a killed build resumes
KILLED_BUILD = """
import os, signal, sys
from pathlib import Path
from facenet.data import cache, cache_entry

cache.CHUNK = 8
sink = {"raw": cache_entry.RawSink, "jpeg": cache_entry.JpegSink}[sys.argv[1]]
commit, commits = sink.commit, []

def commit_then_die(self, first, results):
    commit(self, first, results)
    commits.append(first)
    if len(commits) == 3:
        os.kill(os.getpid(), signal.SIGKILL)   # no cleanup of any kind runs

sink.commit = commit_then_die
cache.load_images(Path(sys.argv[2]), sys.argv[4].split(","), 37, cache.CacheSpec(sys.argv[3], sys.argv[1]))
"""


@pytest.mark.parametrize("fmt", ["raw", "jpeg"])
def test_a_killed_build_resumes_where_it_stopped(train1, tmp_path, monkeypatch, fmt):
    folder = tmp_path / "cache"
    paths = list(train1.paths)
    args = [fmt, str(train1.root), str(folder), ",".join(paths)]
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_BUILD), *args], timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert not list(folder.glob("*.json")), "a killed build looks complete"
    assert len(entry_files(folder)) == 2   # the partial data and its progress record

    monkeypatch.setattr(cache, "CHUNK", 8)
    resumed = load_images(train1.root, paths, 37, CacheSpec(folder, fmt))
    meta = json.loads(next(folder.glob("*.json")).read_text())
    assert meta["resumed_from"] == 24 and meta["n"] == len(paths)
    fresh = load_images(train1.root, paths, 37, CacheSpec(tmp_path / "fresh", fmt))
    assert json.loads(next((tmp_path / "fresh").glob("*.json")).read_text())["resumed_from"] == 0
    assert np.array_equal(resumed[0:len(paths)], fresh[0:len(paths)])
    assert resumed.path.read_bytes() == fresh.path.read_bytes()
    assert entry_files(folder) == entry_files(tmp_path / "fresh")   # no partial file left behind


def test_a_build_without_a_terminal_logs_its_progress(train1, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CHUNK", 16)
    monkeypatch.setattr(cache, "LOG_EVERY_S", 0.0)
    lines: list[str] = []
    load_images(train1.root, train1.paths, 37, CacheSpec(tmp_path, "jpeg"), log=lines.append)
    progress = [l for l in lines if "images/s" in l]
    assert len(progress) >= len(train1.paths) // 16 - 1 and "left" in progress[0]
    assert f"/{len(train1.paths)} (" in progress[-1] and lines[-1].startswith("built the decoded cache")


# ---------------------------------------------------------------- a full disk
def test_a_full_disk_is_one_line_and_leaves_nothing_that_looks_complete(train1, tmp_path, monkeypatch):
    """The write that hits the full disk is simulated (a real one: the tmpfs test below, where one mounts)."""
    writes = []

    def full_after_two(f, data):
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        writes.append(len(data))
        f.write(data)

    monkeypatch.setattr(cache, "CHUNK", 8)
    monkeypatch.setattr(cache_entry, "_append", full_after_two)
    folder = tmp_path / "cache"
    with pytest.raises(DataError) as e:
        load_images(train1.root, train1.paths, 37, CacheSpec(folder, "jpeg"))
    message = str(e.value)
    assert "disk full" in message and "\n" not in message and "partial cache was removed" in message
    assert entry_files(folder) == [], "partial files left behind"
    monkeypatch.undo()
    assert load_images(train1.root, train1.paths, 37, CacheSpec(folder, "jpeg")).format == "jpeg"


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 64 KiB file system, where this process may mount one (root with CAP_SYS_ADMIN)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:   # lazily if still busy: a mount must not outlive the test
        if subprocess.run(["umount", str(mount)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.mark.parametrize("fmt", ["raw", "jpeg"])
def test_a_really_full_disk_during_a_build(train1, tiny_tmpfs, fmt):
    paths = list(train1.paths) * 4   # jpeg: about 1.2 KB an image, more than 64 KiB in all
    with pytest.raises(DataError, match="disk full") as e:
        load_images(train1.root, paths, 37, CacheSpec(tiny_tmpfs / "c", fmt))
    assert "\n" not in str(e.value)
    assert entry_files(tiny_tmpfs / "c") == []
    assert shutil.disk_usage(tiny_tmpfs).used < 8192, "the partial cache still takes the space"


# ---------------------------------------------------------------- where it lives
def test_default_cache_folder_is_the_users_keyed_by_the_dataset(tmp_path, monkeypatch):
    monkeypatch.delenv("FACESEARCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    a, b = tmp_path / "one" / "train1", tmp_path / "two" / "train1"
    assert default_cache_dir(a).parent == tmp_path / "xdg" / "facesearch"
    assert default_cache_dir(a).name.startswith("train1-") and default_cache_dir(a) != default_cache_dir(b)
    assert default_cache_dir(a) == default_cache_dir(tmp_path / "one" / ".." / "one" / "train1")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")   # the spec says: ignore it
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir(a).parent == tmp_path / "home" / ".cache" / "facesearch"
    monkeypatch.setenv("FACESEARCH_CACHE", str(tmp_path / "env"))
    assert default_cache_dir(a) == tmp_path / "env"


def tree_state(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in folder.rglob("*"))


def test_training_and_scoring_write_nothing_into_the_dataset(tiny_config, synth_data, tmp_path, monkeypatch):
    from facenet import fit
    from facenet.eval.evaluate import Verifier

    data = Path(shutil.copytree(synth_data, tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    before = tree_state(data)
    config = tiny_config.replace(train_path=str(data / "train1"), val_path=str(data / "val"), cache_dir="",
                                 epochs=1, run_dir=str(tmp_path / "run"))
    fit(config, log=lambda m: None)
    Verifier(PairList.read(data / "test", "test_pairs.csv"), 32)
    assert tree_state(data) == before
    built = {p.parent.name for p in (tmp_path / "xdg" / "facesearch").rglob("*.json")}
    assert {d.split("-")[0] for d in built} == {"train1", "val", "test"}


def test_an_unwritable_cache_folder_is_one_line(train1, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(DataError, match=r"cache folder .*file/c is not writable .* set cache_dir"):
        load_images(train1.root, train1.paths, 37, CacheSpec(tmp_path / "file" / "c"))


def _without_write_permission() -> list[str]:
    """A command prefix under which permission bits bind: as root, drop the capabilities that bypass them."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: permission bits cannot be made to bind")
    caps = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", "--"]


READ_ONLY_SESSION = """
import contextlib, io, json, subprocess, sys
from search import cli

steps = json.loads(sys.argv[1])
for step in steps:
    if step[0] == "chmod":
        subprocess.run(step, check=True)
        continue
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = ["facesearch", *step]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    print(json.dumps({"code": code, "out": out.getvalue(), "err": err.getvalue()}), flush=True)
"""


def test_a_read_only_dataset_trains_and_scores(synth_data, tmp_path):
    """The dataset, and once built the cache folder too, are read-only to the process that runs the
    commands (as root: one without CAP_DAC_OVERRIDE, so that permission bits bind). One process runs the
    real command line three times (a process start costs more than the training here)."""
    prefix = _without_write_permission()
    data = Path(shutil.copytree(synth_data, tmp_path / "data"))
    xdg, runs = tmp_path / "xdg", tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(xdg), "OMP_NUM_THREADS": "1"}
    common = [f"val_path={data / 'val'}", f"train_path={data / 'train1'}", "resolution=32", "model=resnet_w",
              "width=0.125", "n_out=32", "batch_size=8", "n_per_class=2", "epochs=1", "workers=0",
              "augment=none", "device=cpu"]

    def train(*extra: str) -> list[str]:
        return ["train", *[a for kv in [*common, *extra] for a in ("--set", kv)]]

    steps = [
        train(f"run_dir={runs / 'a'}"),
        ["chmod", "-R", "a-w", str(xdg)],   # a shared, prebuilt, read-only cache
        ["score", str(runs / "a"), "--pairs", str(data / "val" / "val_pairs.csv"),
         "--out", str(tmp_path / "s.csv")],
        train(f"run_dir={runs / 'b'}", f"cache_dir={data / 'cache'}"),
    ]
    subprocess.run(["chmod", "-R", "a-w", str(data)], check=True)
    try:
        done = subprocess.run([*prefix, sys.executable, "-c", READ_ONLY_SESSION, json.dumps(steps)], env=env,
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
    finally:
        subprocess.run(["chmod", "-R", "u+w", *(str(p) for p in (data, xdg) if p.exists())], check=True)
    assert done.returncode == 0, done.stderr
    trained, scored, refused = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert trained["code"] == 0 and "best val EER" in trained["out"], trained
    assert scored["code"] == 0 and "wrote" in scored["out"], scored
    assert len((tmp_path / "s.csv").read_text().splitlines()) == len(
        (data / "val" / "val_pairs.csv").read_text().splitlines())
    lines = refused["err"].strip().splitlines()
    assert refused["code"] == 2 and len(lines) == 1 and "cannot write there" in lines[0], refused
    assert not (data / "cache").exists()
