"""What the search costs beyond training: the parameter-cap check and the per-trial overhead.

1. ``count_params`` (the model built on the meta device) for every registered model, at its
   default config and at each width the plan tries, in milliseconds.
2. The per-trial overhead of the search itself: N trials of the quickstart study through the
   real worker loop (``optimize_until``) and the real ``Objective`` (suggest, cap check,
   constraint, user attributes, per-epoch report / should_prune, journal writes), with
   ``facenet.fit`` replaced by a function that reports made-up epochs without training,
   divided by the measured time of one real quickstart trial (one torch thread, as each of the
   quickstart's two worker processes runs). Target: < 1 %.
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from unittest import mock

import numpy as np

import search.run.objective
from common import face_set, open_study, parse, parser, quickstart_spec, ratio_line, temp_dir, timed
from facenet import fit
from facenet.config import TrainConfig
from facenet.data.cache import CacheSpec, cache_size, load_images
from facenet.data.folders import IdentityFolder, PairList
from facenet.models import MODELS, WIDTHS, count_params
from facenet.train import EpochResult, RunResult
from search.run.objective import Objective
from search.plan.quickstart import SYNTH
from search.spec import StudySpec
from search.run.worker import optimize_until


def count_params_table(repeats: int) -> None:
    print(f"{'model':<18}{'width':>7}{'params':>13}{'ms per check':>14}")
    for name in MODELS.names():
        for width in (1.0, *(w for w in WIDTHS.get(name, ()) if w != 1.0)):
            config = TrainConfig(model=name, width=width)
            count = count_params(config)   # the first call also imports what the model needs
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                count_params(config)
                times.append(time.perf_counter() - start)
            shown = f"{width:g}" if name in WIDTHS else "-"
            print(f"{name:<18}{shown:>7}{count:>13,}{statistics.median(times) * 1000:>14.1f}")


def no_training(seed: int):
    """A stand-in for ``facenet.fit`` that reports made-up epochs at once, so only the search's own work is timed."""
    rng = np.random.default_rng(seed)

    def fake_fit(config: TrainConfig, on_epoch=None, log=print, progress=False) -> RunResult:
        history = []
        for epoch in range(1, config.epochs + 1):
            result = EpochResult(epoch, config.epochs, 1.0, float(rng.uniform(10, 40)), config.lr, 0.0, 0.0)
            history.append(asdict(result))
            if on_epoch:
                on_epoch(result)
        best = min(history, key=lambda h: h["val_eer"])
        return RunResult(best["val_eer"], best["epoch"], history, config.run_dir, 0, "cpu", 0.0)

    return fake_fit


def overhead_per_trial(spec: StudySpec, trials: int, work: Path) -> float:
    study = open_study(spec, work / "overhead.journal")
    objective = Objective(spec, work / "runs", "cpu", log=lambda m: None)
    with mock.patch.object(search.run.objective, "fit", no_training(0)), timed() as t:
        optimize_until(study, objective, trials)
    states = [trial.state.name.lower() for trial in study.trials]
    counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
    print(f"{trials} trials without training ({counts}) on a journal file: {t() / trials * 1000:.1f} ms per trial")
    return t() / trials


def trial_seconds(spec: StudySpec, work: Path, epochs: int) -> float:
    """One real quickstart trial (its first enqueued point) trained for ``epochs``, caches built beforehand."""
    config = spec.to_config(spec.enqueue[0]).replace(run_dir=str(work / "trial"), device="cpu", epochs=epochs)
    train = IdentityFolder.scan(config.train_path)
    load_images(train.root, train.paths, cache_size(config.resolution), CacheSpec.of(config))
    val = PairList.read(config.val_path, config.val_list, config.max_val_pairs)
    load_images(val.root, val.images, cache_size(config.resolution), CacheSpec.of(config))
    with timed() as t:
        fit(config, log=lambda m: None)
    return t()


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--trials", type=int, default=30, help="trials without training")
    p.add_argument("--repeats", type=int, default=5, help="count_params calls per config (median shown)")
    a = parse(p, argv)
    synth = {k: v for k, v in SYNTH.items() if k != "seed"}
    if a.quick:
        a.trials, a.repeats = 5, 1
        synth.update(identities=24, images_per_identity=6)
    count_params_table(a.repeats)
    with face_set(a.data, **synth) as data, temp_dir() as work:
        spec = quickstart_spec(data, n_trials=a.trials)
        overhead = overhead_per_trial(spec, a.trials, work)
        epochs = spec.epochs or TrainConfig().epochs
        measured = 1 if a.quick else epochs
        trial = trial_seconds(spec, work, measured) * epochs / measured
    print(f"one quickstart trial ({spec.enqueue[0]}, {epochs} epochs"
          f"{f', 1 measured x {epochs}' if measured != epochs else ''}): {trial:.1f} s")
    ratio_line(overhead / trial, f"overhead {overhead * 100 / trial:.2f}% of a trial: {overhead * 1000:.0f} ms "
                                 f"per trial vs {trial:.1f} s of training")


if __name__ == "__main__":
    main(sys.argv[1:])
