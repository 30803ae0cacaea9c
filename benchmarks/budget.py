"""Spending a fixed compute budget three ways, on synthetic faces at CPU size, for several seeds.

(a) TPE + median pruning at full fidelity (today's default); (b) TPE + Hyperband (epochs as the
resource) at full fidelity; (c) proxy then promote: TPE at a cheap fidelity (lower resolution,
half the identities, fewer epochs) for part of the budget, then the proxy's best k re-run at full
fidelity (``from: {study, top: k}``) with the rest. Every run is an in-process worker
(``optimize_until`` with the worker's ``CostGuard``): each gets ``budget: {hours}`` worth
``--budget`` seconds and stops when the next trial's estimate no longer fits. The calibration
is measured once, up front, and shared by all runs (one storage).

Printed per strategy: the best full-fidelity val EER (a complete trial at full fidelity; mean and
spread over seeds), the compute used (seconds, and image-epochs: training images x epochs run),
the compute spent when its best first came within 1 point of (a)'s final best on the same seed,
and, for every trial, the planner's estimate (for the epochs it ran) against its measured time.
Targets: (b) or (c) within 1 point of (a) with <= 50 % of (a)'s compute on the seeds' mean;
estimates within 25 % of measured time (median over the trials).
"""
from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from common import face_set, machine, parse, parser, temp_dir, timed
from search.cost.budget import CostGuard
from search.cost.calibrate import calibrate
from search.cost.calibration import SharedCalibration
from search.record import TrialRecord
from search.run.objective import Objective
from search.run.study import prepare_study
from search.run.worker import optimize_until
from search.spec import apply_from, build_pruner, build_sampler, parse_spec
from search.storage import open_storage
from search.view.proxy import proxy_pairs, spearman

SPACE = {
    "width": {"type": "categorical", "choices": [0.125, 0.25]},
    "loss": {"type": "categorical", "choices": ["softmax", "arcface", "cosface"]},
    "margin": {"type": "float", "low": 0.1, "high": 0.5, "when": {"loss": ["arcface", "cosface"]}},
    "lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
}
FIXED = {"model": "resnet_w", "n_out": 64, "batch_size": 16, "n_per_class": 2, "workers": 0,
         "augment": "conservative", "scheduler": "cosine", "device": "cpu"}


@dataclass
class Run:
    """One strategy on one seed: its trials in the order they ran, and which count as full fidelity."""

    trials: list = field(default_factory=list)
    full: set = field(default_factory=set)        # (study, number) of full-fidelity trials

    def trace(self) -> list[tuple[float, int, float]]:
        """(seconds so far, image-epochs so far, best full-fidelity val EER so far) after each trial."""
        out, seconds, images, best = [], 0.0, 0, float("inf")
        for study, t in self.trials:
            r = TrialRecord.of(t)
            seconds += r.spent
            images += (r.estimate.images_per_epoch if r.estimate else 0) * len(t.intermediate_values)
            if (study, t.number) in self.full and t.state == TrialState.COMPLETE and t.value is not None:
                best = min(best, t.value)
            out.append((seconds, images, best))
        return out

    def last(self) -> tuple[float, int, float]:
        """The trace's last step; nothing spent and no EER where no trial ran (a budget too small)."""
        trace = self.trace()
        return trace[-1] if trace else (0.0, 0, float("inf"))

    def reach(self, target: float) -> tuple[float, int] | None:
        return next(((s, i) for s, i, b in self.trace() if b <= target), None)

    def best_at(self, compute: float, column: int) -> float:
        """Best full-fidelity val EER once ``compute`` (seconds: column 0, image-epochs: 1) was spent."""
        done = [step[2] for step in self.trace() if step[column] <= compute]
        return done[-1] if done else float("inf")


def mean_reach(runs: list[Run], target: float, column: int) -> float | None:
    """The least compute at which the seeds' mean best full-fidelity EER is within ``target``."""
    for x in sorted(step[column] for r in runs for step in r.trace()):
        if statistics.mean(r.best_at(x, column) for r in runs) <= target:
            return x
    return None


def spec(name: str, seed: int, data: Path, fixed: dict, epochs: int, seconds: float, pruner: dict, **extra):
    raw = {"name": name, "data": {"train": str(data / "train1"), "val": str(data / "val")},
           "fixed": {**FIXED, **fixed}, "space": SPACE,
           "sampler": {"name": "tpe", "seed": seed, "n_startup_trials": 4},
           "pruner": pruner, "budget": {"epochs": epochs, "hours": seconds / 3600}, **extra}
    return parse_spec(raw, source=f"<{name}>")


def run_phase(s, storage, work: Path, calibration: SharedCalibration) -> list:
    """One in-process worker until the study's GPU-hours are spent; the study's trials that ran."""
    prepare_study(s, storage)
    study = optuna.load_study(study_name=s.name, storage=storage, sampler=build_sampler(s),
                              pruner=build_pruner(s))
    objective = Objective(s, work / "runs", "cpu", log=lambda m: None)
    guard = CostGuard(s, study, calibration, objective.config_for, log=lambda m: None)
    optimize_until(study, objective, s.n_trials, log=lambda m: None, before_trial=guard)
    return [(s.name, t) for t in study.get_trials(deepcopy=False) if TrialRecord.of(t).seconds is not None]


def strategies(a, seed: int, data: Path, storage, work: Path,
               calibration: SharedCalibration) -> dict[str, Run]:
    full = {"resolution": 32}
    proxy = {"resolution": a.proxy_res, "max_identities": a.proxy_ids}
    median = {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1}
    hyperband = {"name": "hyperband", "min_resource": 1, "reduction_factor": 3}
    runs = {}
    for key, pruner in (("a", median), ("b", hyperband)):
        trials = run_phase(spec(f"{key}-{seed}", seed, data, full, a.epochs, a.budget, pruner), storage, work,
                           calibration)
        runs[key] = Run(trials, {(n, t.number) for n, t in trials})
    share = a.proxy_share * a.budget
    first = run_phase(spec(f"c-proxy-{seed}", seed, data, proxy, a.proxy_epochs, share, {"name": "none"}),
                      storage, work, calibration)
    if not any(t.state == TrialState.COMPLETE for _, t in first):
        print(f"(c) seed {seed}: no proxy trial completed within {share:.1f} s; nothing to promote")
        runs["c"] = Run(first, set())
        return runs
    promote = apply_from(spec(f"c-full-{seed}", seed, data, {**full, "max_identities": 0}, a.epochs,
                              a.budget - sum(TrialRecord.of(t).spent for _, t in first), {"name": "none"},
                              **{"from": {"study": f"c-proxy-{seed}", "top": a.top}}), storage)
    second = run_phase(promote, storage, work, calibration)
    runs["c"] = Run(first + second, {(n, t.number) for n, t in second})
    return runs


def estimate_error(t) -> tuple[float, float, float] | None:
    """(estimate for the epochs it ran, measured seconds, |error| %) of a trial that trained."""
    r = TrialRecord.of(t)
    if r.estimate is None or not r.seconds or not t.intermediate_values:
        return None
    est = r.estimate.for_epochs(len(t.intermediate_values))
    return est, r.seconds, 100 * abs(est - r.seconds) / r.seconds


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def share(part: float, whole: float) -> float:
    return part / whole if whole else float("nan")


def summary(values: list[float]) -> str:
    spread = f" +- {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2f}%{spread} ({', '.join(f'{v:.2f}' for v in values)})"


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated sampler seeds")
    p.add_argument("--budget", type=float, default=55.0, help="compute seconds per strategy and seed")
    p.add_argument("--epochs", type=int, default=6, help="full-fidelity epochs")
    p.add_argument("--proxy-res", type=int, default=24, help="proxy resolution (full: 32)")
    p.add_argument("--proxy-ids", type=int, default=20, help="proxy identities (of the 60 in train1)")
    p.add_argument("--proxy-epochs", type=int, default=2)
    p.add_argument("--proxy-share", type=float, default=0.25, help="share of the budget for the proxy search")
    p.add_argument("--top", type=int, default=3, help="proxy trials promoted to full fidelity")
    a = parse(p, argv)
    synth = {"identities": 110, "images_per_identity": 12, "size": 40, "val_pairs": 600}
    if a.quick:
        a.seeds, a.budget, a.epochs, a.top = a.seeds.split(",")[0], min(a.budget, 12.0), 2, 2   # --budget: lower
        synth.update(identities=60, images_per_identity=8, val_pairs=200)
    seeds = [int(s) for s in a.seeds.split(",")]
    optuna.logging.set_verbosity(optuna.logging.ERROR)   # a trial the budget refuses is logged as failed
    with face_set(a.data, **synth) as data, temp_dir() as work, timed() as total:
        storage = open_storage(str(work / "bench.journal"))
        calibration = SharedCalibration(storage, log=lambda m: None)
        with timed() as t:
            specs = [work / "full.yaml", work / "proxy.yaml"]
            for path, fixed in zip(specs, ({"resolution": 32}, {"resolution": a.proxy_res,
                                                                 "max_identities": a.proxy_ids})):
                s = spec(path.stem, 0, data, fixed, a.epochs, a.budget, {"name": "none"})
                path.write_text(yaml.safe_dump(_as_yaml(s)))
            table = calibrate(specs, storage, device="cpu", steps=5, warmup=2, eval_images=256,
                              log=lambda m: None, min_seconds=0.5 if a.quick else 2.0)   # quick: a worker's probe
        print(f"calibrated {len(table.entries)} points in {t():.0f} s on {table.devices()[0]}")
        runs = {k: [] for k in "abc"}
        for seed in seeds:
            for key, run in strategies(a, seed, data, storage, work, calibration).items():
                runs[key].append(run)
            print(f"seed {seed} done ({total():.0f} s so far)", flush=True)
        cheap, error = report(runs, seeds, a)
    print(f"total {total():.0f} s")
    print(machine())
    if cheap:
        key = min(cheap, key=cheap.get)
        print(f"ratio: {cheap[key]:.3g}x (({key}) brought the seeds' mean best val EER within 1 point of "
              f"(a)'s with {100 * cheap[key]:.0f}% of (a)'s seconds; estimates' median |error| {error:.1f}%)")
    else:
        print(f"ratio: none ((b) and (c) never came within 1 point of (a)'s mean best; estimates' median "
              f"|error| {error:.1f}%)")


def _as_yaml(s) -> dict:
    """A spec as YAML for ``calibrate`` (which reads files): its data, fixed, space and epochs."""
    return {"name": s.name, "data": s.data, "fixed": s.fixed,
            "space": {k: p.to_dict() for k, p in s.space.items()},
            "budget": {"n_trials": 1, "epochs": s.epochs}}


def report(runs: dict[str, list[Run]], seeds: list[int], a) -> None:
    names = {"a": "(a) TPE + median, full fidelity", "b": "(b) TPE + Hyperband, full fidelity",
             "c": f"(c) proxy ({a.proxy_res} px, {a.proxy_ids} ids, {a.proxy_epochs} ep) then top {a.top} "
                  f"promoted"}
    print("\nevery trial: strategy seed study #n state epochs estimate measured |error|")
    errors = {k: [] for k in runs}
    for key, per_seed in runs.items():
        for seed, run in zip(seeds, per_seed):
            for study, t in run.trials:
                e = estimate_error(t)
                if e is None:
                    continue
                errors[key].append(e[2])
                print(f"  {key} {seed} {study:<12} #{t.number:<3}{t.state.name:<9}"
                      f"{len(t.intermediate_values)} ep  est {e[0]:6.2f} s  real {e[1]:6.2f} s  {e[2]:5.1f}%")
    a_best = [r.last()[2] for r in runs["a"]]
    a_compute = statistics.mean(r.last()[0] for r in runs["a"])
    a_images = statistics.mean(r.last()[1] for r in runs["a"])
    print()
    verdicts, mean_verdicts = {}, {}
    for key, per_seed in runs.items():
        best = [r.last()[2] for r in per_seed]
        seconds = [r.last()[0] for r in per_seed]
        images = [r.last()[1] for r in per_seed]
        reached = [r.reach(target + 1.0) for r, target in zip(per_seed, a_best)]
        print(f"{names[key]}")
        print(f"  best full-fidelity val EER {summary(best)}")
        print(f"  compute used: {statistics.mean(seconds):.1f} s ({', '.join(f'{s:.1f}' for s in seconds)}), "
              f"{statistics.mean(images):,.0f} image-epochs ({', '.join(f'{i:,}' for i in images)})")
        to_reach = [r[0] if r else None for r in reached]
        shown = ", ".join("never" if s is None else f"{s:.1f} s" for s in to_reach)
        if all(s is not None for s in to_reach):
            mean = statistics.mean(to_reach)
            imgs = statistics.mean(r[1] for r in reached)
            verdicts[key] = share(mean, a_compute)
            print(f"  compute to come within 1 point of (a)'s best: {mean:.1f} s = "
                  f"{100 * share(mean, a_compute):.0f}% of (a)'s compute, {imgs:,.0f} image-epochs ({shown})")
        else:
            print(f"  compute to come within 1 point of (a)'s best: not reached on every seed ({shown})")
        target = statistics.mean(a_best) + 1.0
        secs, imgs = mean_reach(per_seed, target, 0), mean_reach(per_seed, target, 1)
        if secs is not None:
            mean_verdicts[key] = share(secs, a_compute)
        print(f"  seeds' mean best within 1 point of (a)'s mean best ({target - 1:.2f}%) after: "
              + ("never" if secs is None else f"{secs:.1f} s = {100 * share(secs, a_compute):.0f}% of (a)'s "
                                                  f"seconds")
              + ("" if imgs is None else f", {imgs:,.0f} image-epochs = {100 * share(imgs, a_images):.0f}% "
                                         f"of (a)'s"))
        print(f"  estimate |error|: median {median(errors[key]):.1f}% over "
              f"{len(errors[key])} trials")
        if key == "c":
            rhos = []
            for r in per_seed:
                pairs = proxy_pairs([t for study, t in r.trials if (study, t.number) in r.full])
                rhos.append(spearman([p[2] for p in pairs], [p[3] for p in pairs]))
            print(f"  Spearman of proxy vs full-fidelity val EER of the promoted trials, per seed: "
                  f"{', '.join('undefined' if rho != rho else f'{rho:.2f}' for rho in rhos)}")
    every = [e for v in errors.values() for e in v]
    print(f"\nestimate vs measured, all {len(every)} trials: median |error| {median(every):.1f}% "
          f"(target <= 25%: {'holds' if median(every) <= 25 else 'misses'})")
    for label, found in (("every seed", verdicts), ("the seeds' mean curve", mean_verdicts)):
        cheap = {k: v for k, v in found.items() if k in "bc"}
        best_key = min(cheap, key=cheap.get) if cheap else None
        held = best_key is not None and cheap[best_key] <= 0.5
        print(f"target (b) or (c) within 1 point with <= 50% of (a)'s seconds, on {label}: "
              + (f"{'holds' if held else 'misses'} ({best_key}: {100 * cheap[best_key]:.0f}%)" if best_key
                 else "misses (neither got there)"))
    return {k: v for k, v in mean_verdicts.items() if k in "bc"}, median(every)


if __name__ == "__main__":
    main(sys.argv[1:])
