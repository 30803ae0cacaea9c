"""Shared pieces of the benchmarks: arguments, a face set to measure on, timing, the ratio line.

Every benchmark measures both sides in one process, one after the other, on the same
data, and prints ``ratio: ...`` as its last line.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import torch


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a small version (seconds), for the smoke test")
    p.add_argument("--data", default="", help="a data set in the course layout (train1/, val/val_pairs.csv); "
                                              "default: synthesise one into a temporary folder")
    # On cores shared with other jobs a second intra-op thread makes every op wait for a descheduled
    # thread, and timings swing 10-100x from run to run; one thread is slower but steady.
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads; 0 = torch's default")
    return p


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    return a


@contextlib.contextmanager
def face_set(data: str, identities: int, images_per_identity: int, size: int, **extra) -> Iterator[Path]:
    """``data`` if given, else a freshly synthesised set (course layout) that is deleted afterwards."""
    if data:
        yield Path(data)
        return
    from facenet.data.synth import synthesize

    with tempfile.TemporaryDirectory(prefix="facesearch-bench-") as tmp:
        root = Path(tmp) / "data"
        with timed() as t:
            synthesize(root, identities=identities, images_per_identity=images_per_identity, size=size, seed=0,
                       **extra)
        print(f"synthesised {identities} identities x {images_per_identity} images at {size} px in {t():.1f} s")
        yield root


@contextlib.contextmanager
def temp_dir(prefix: str = "facesearch-bench-") -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """``with timed() as t: ...`` then ``t()`` is the elapsed seconds (CUDA work included)."""
    start, end = time.perf_counter(), None

    def elapsed() -> float:
        return (end if end is not None else time.perf_counter()) - start

    yield elapsed
    sync()
    end = time.perf_counter()


def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def device(name: str = "auto") -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def quickstart_spec(data: Path, **changes):
    """studies/quickstart.yaml read against ``data`` (its ${FACESEARCH_DATA}), with ``changes`` to the spec."""
    import dataclasses

    from search.builtin import builtin_path
    from search.spec import load_spec

    os.environ["FACESEARCH_DATA"] = str(data)
    return dataclasses.replace(load_spec(builtin_path("quickstart")), **changes)


def alternate(first: Callable[[], float], second: Callable[[], float], rounds: int,
              names: tuple[str, str]) -> tuple[float, float, float]:
    """Measure two rates back to back ``rounds`` times: (median first, median second, median per-round ratio).

    A per-round ratio compares measurements taken seconds apart, so load from other
    processes on shared cores cancels more than in a ratio of overall figures.
    """
    a, b = [], []
    for r in range(rounds):
        a.append(first())
        b.append(second())
        print(f"round {r + 1}: {names[0]} {a[-1]:.0f} img/s, {names[1]} {b[-1]:.0f} img/s, ratio {a[-1] / b[-1]:.2f}",
              flush=True)
    return statistics.median(a), statistics.median(b), statistics.median(x / y for x, y in zip(a, b))


def open_study(spec, journal: Path):
    """The spec's study in a fresh journal file, with its known-good points queued, as a worker opens it."""
    import optuna

    from search.spec import build_pruner, build_sampler
    from search.storage import open_storage
    from search.run.study import prepare_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(str(journal))
    prepare_study(spec, storage)
    return optuna.load_study(study_name=spec.name, storage=storage, sampler=build_sampler(spec),
                             pruner=build_pruner(spec))


def machine() -> str:
    """The conditions a number was measured under (the CPUs may be shared)."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def ratio_line(ratio: float, detail: str) -> None:
    print(machine())
    print(f"ratio: {ratio:.3g}x ({detail})", flush=True)
