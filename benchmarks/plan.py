"""One small compute budget B spent three ways on synthetic faces, for several seeds: (a) one default run,
(b) one flat TPE study over the joint space under B, (c) the plan runner under B.

(a) the baseline config (narrow ResNet, softmax, Adam 1e-3, StepLR) trained once; (b) ``run_worker`` on a
study over every knob at full fidelity with ``budget: {hours: B}``; (c) ``plan run`` of three phases (a
proxy at 24 px on half the identities, its best 3 promoted to full fidelity, then the winner's learning
rate and schedule tuned), calibration and the finishing steps included in B. Every arm ends with one
model: (a) its run, (b) the best trial's checkpoint, (c) the plan's retrained winner; each is scored on
the val list and on the untouched test list, with 95% identity-bootstrap intervals
(``facenet.eval.stats``). (c) is compared with (a) and (b) paired on the test list. Spend is the
GPU-seconds each arm accounted (trials, probes, calibration, retrain) against B.

``--arms abd`` runs (d), a plan without the proxy (the joint space at full fidelity with median pruning,
then tune), compared with (b) the same way.

Targets: spend within B + 5%; (c) beats (a) by more than the noise (the paired interval of c - a below 0)
on at least 2 of 3 seeds; (c) no worse than (b) beyond the noise (the interval of c - b not above 0).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import yaml

from common import face_set, parse, parser, temp_dir

FIXED = {"model": "resnet_w", "n_out": 64, "batch_size": 16, "n_per_class": 2, "workers": 0, "device": "cpu",
         "augment": "none", "optimizer": "adam"}
JOINT = {
    "width": {"type": "categorical", "choices": [0.125, 0.25, 0.5]},
    "loss": {"type": "categorical", "choices": ["softmax", "arcface", "cosface"]},
    "margin": {"type": "float", "low": 0.1, "high": 0.5, "when": {"loss": ["arcface", "cosface"]}},
    "lr": {"type": "float", "low": 3e-4, "high": 3e-2, "log": True},
}
TUNE = {"scheduler": {"type": "categorical", "choices": ["step", "cosine"]},
        "lr": {"type": "float", "low": 3e-4, "high": 3e-2, "log": True}}
DEFAULT = {"width": 0.25, "loss": "softmax", "lr": 1e-3, "scheduler": "step"}
DEFAULT_POINT = {k: v for k, v in DEFAULT.items() if k in JOINT}   # (a)'s config, first in a joint-space search
MEDIAN = {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1}   # every full-fidelity search's pruner


def scored(model, root: Path, split: str):
    """The model's scores on a list, with the list (for paired comparisons) and the EER interval."""
    from facenet.data.folders import PairList
    from facenet.eval.scoring import score_pairs
    from facenet.eval.stats import ScoredPairs

    pairs = PairList.read(root / split, f"{split}_pairs.csv")
    s = ScoredPairs.of(pairs, score_pairs(model, pairs, device="cpu"))
    return s, s.interval()


def train_cap(identities: int) -> None:
    """Every arm trains on at most this many identities: the val and test lists grow (tighter intervals)
    while a trial's cost stays put."""
    FIXED["max_identities"] = identities


def arm_default(data: Path, tmp: Path, seed: int, epochs: int) -> dict:
    from facenet import TrainConfig, fit

    config = TrainConfig(train_path=str(data / "train1"), val_path=str(data / "val"), resolution=32,
                         epochs=epochs, seed=seed, run_dir=str(tmp / f"a-{seed}"), **FIXED, **DEFAULT)
    start = time.time()
    result = fit(config, log=lambda m: None)
    return {"model": Path(result.run_dir) / "best.pt", "spent": time.time() - start}


def arm_flat(data: Path, tmp: Path, seed: int, epochs: int, budget: float) -> dict:
    import optuna

    from search.cost.spend import spent_seconds
    from search.record import TrialRecord, best_trial
    from search.run.worker import run_worker
    from search.spec import parse_spec
    from search.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)   # after the worker's import: a budget stop is a warning
    url = str(tmp / f"b-{seed}" / "s.journal")
    spec = parse_spec({"name": "flat", "data": {"train": str(data / "train1"), "val": str(data / "val")},
                       "fixed": {**FIXED, "resolution": 32}, "space": {**JOINT, **{"scheduler": TUNE["scheduler"]}},
                       "sampler": {"name": "tpe", "seed": seed, "n_startup_trials": 4},
                       "pruner": MEDIAN,
                       "budget": {"n_trials": 200, "epochs": epochs, "hours": budget / 3600},
                       "enqueue": [DEFAULT]})
    run_worker(spec, url, device="cpu", log=lambda m: None)
    study = optuna.load_study(study_name="flat", storage=open_storage(url))
    best = best_trial(study)
    return {"model": Path(TrialRecord.of(best).config["run_dir"]) / "best.pt",   # where the trial ran
            "spent": spent_seconds(study.get_trials(deepcopy=False)), "trials": len(study.trials)}


def write_plan(data: Path, folder: Path, seed: int, epochs: int, budget: float, proxy: bool = True) -> Path:
    """(c)'s plan: proxy -> full (its top 3) -> tune; without ``proxy`` ((d)): the joint space searched at full
    fidelity with median pruning (as (b) does), then tune."""
    folder.mkdir(parents=True, exist_ok=True)
    train = sum(1 for d in (data / "train1").iterdir() if d.is_dir())
    half = max(4, min(train, FIXED.get("max_identities") or train) // 2)
    where = {"train": str(data / "train1"), "val": str(data / "val")}
    sampler = {"name": "tpe", "seed": seed, "n_startup_trials": 4}
    short = {"name": "tpe", "seed": seed, "n_startup_trials": 2}   # the tuning phase's floor is its start-up
    phases = {
        "proxy": {"fixed": {**FIXED, "resolution": 24, "max_identities": half, "scheduler": "step"}, "space": JOINT,
                  "pruner": {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 0},
                  "budget": {"n_trials": 12, "epochs": max(1, epochs // 2)}, "enqueue": [DEFAULT_POINT]},
        "full": {"from": {"study": "proxy", "top": 3}, "fixed": {**FIXED, "resolution": 32, "scheduler": "step"},
                 "space": JOINT, "pruner": {"name": "none"}, "budget": {"epochs": epochs}},
        "tune": {"from": {"study": "full"},
                 "fixed": {**FIXED, "resolution": 32}, "space": TUNE,
                 "pruner": MEDIAN,
                 "budget": {"n_trials": 3, "epochs": epochs}, "sampler": short},
    }
    if not proxy:
        phases = {"full": {"fixed": {**FIXED, "resolution": 32, "scheduler": "step"}, "space": JOINT,
                           "pruner": MEDIAN,
                           "budget": {"n_trials": 12, "epochs": epochs},
                           "enqueue": [DEFAULT_POINT]},
                  "tune": phases["tune"]}
    for name, body in phases.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "data": where, "sampler": sampler,
                                                             **body}))
    plan = folder / "bench.yaml"
    # the last phase may grow until its hours are spent: at its default 4x written trials it ran out of trials
    # with a sixth of B left (nothing after it to roll that forward to)
    entries = ["proxy", "full", {"study": "tune", "max_trials": 40}] if proxy else [
        {"study": "full", "weight": 3, "max_trials": 80}, {"study": "tune", "max_trials": 40}]
    plan.write_text(yaml.safe_dump({"name": "bench", "hours": budget / 3600, "phases": entries,
                                    # probing takes 5-15 s here whatever B is: a larger share of a small B
                                    "calibration": {"share": round(max(0.15, 10 / budget), 3)},
                                    "fit": {"min_resolution": 24, "min_identities": 20},
                                    "finish": {"study": "tune", "epochs": epochs, "report": False}}))
    return plan


def arm_plan(data: Path, tmp: Path, seed: int, epochs: int, budget: float, quiet: bool, proxy: bool = True) -> dict:
    """The plan run; a plan refused at its floors (B too small for this machine's calibrated pace) is a row
    that says so, with what its calibration spent."""
    from search.cost.plan import PlanOverBudget
    from search.plan.runner import Run, run_plan
    from search.plan.schema import load_plan

    arm = "c" if proxy else "d"
    folder = tmp / f"{arm}-{seed}"
    plan = load_plan(write_plan(data, folder, seed, epochs, budget, proxy))
    os.environ["FACESEARCH_RUNS"] = str(folder / "runs")
    say = (lambda m: None) if quiet else (lambda m: print(f"    {m}"))
    start = time.time()
    try:
        status = run_plan(Run(plan, str(folder / "s.journal"), budget / 3600, 1, None, "cpu", say,
                              (lambda t: None) if quiet else _print_table))
    except PlanOverBudget as e:
        print(f"    {arm} plan seed {seed}: refused after {time.time() - start:.1f} s of calibration: {e}")
        return {"refused": str(e), "spent": time.time() - start, "trials": 0}
    finally:
        os.environ.pop("FACESEARCH_RUNS", None)
    phases = sum(p["spent_hours"] or 0 for p in status["phases"]) * 3600
    calibrated = status["calibration_hours"] * 3600
    print(f"    {arm} plan seed {seed}: calibration {calibrated:.1f} s, phases {phases:.1f} s, finishing "
          f"{status['spent_hours'] * 3600 - calibrated - phases:.1f} s")
    return {"model": Path(status["finish"]["bundle"]), "spent": status["spent_hours"] * 3600,
            "trials": sum(p["trials_run"] or 0 for p in status["phases"])}


def _print_table(table) -> None:
    from rich.console import Console

    Console(width=150).print(table)


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, first-seed + 1, ...")
    p.add_argument("--budget", type=float, default=200.0, help="B: CPU-seconds per arm (a, b, c each)")
    p.add_argument("--epochs", type=int, default=2, help="full-fidelity epochs (a's run, b's and c's trials)")
    p.add_argument("--identities", type=int, default=2000, help="synthesised (10%% each go to val and test)")
    p.add_argument("--train-identities", type=int, default=220, help="the most identities any arm trains on")
    p.add_argument("--pairs", type=int, default=4000, help="val and test pairs each")
    p.add_argument("--json", default="", help="also write the rows to this file")
    p.add_argument("--arms", default="abc", help="which arms to run: a, b, c and (d) a plan without the proxy (the "
                   "joint space at full fidelity with median pruning, then tune), to tell the runner's costs from "
                   "the proxy's")
    a = parse(p, argv)
    if a.quick:
        a.seeds, a.budget, a.epochs, a.identities, a.pairs = 1, 30.0, 1, 40, 200
    train_cap(a.train_identities)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads or 1))   # the plan's worker processes too
    rows = []
    with face_set(a.data, a.identities, 10, 32, val_pairs=a.pairs, test_pairs=a.pairs) as data, temp_dir() as tmp:
        os.environ["FACESEARCH_CACHE"] = str(tmp / "cache")
        print(f"B = {a.budget:g} CPU-seconds per arm, {a.epochs} epochs at full fidelity, {a.seeds} seed(s)")
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            runs = {"a default": lambda: arm_default(data, tmp, seed, a.epochs),
                    "b flat TPE": lambda: arm_flat(data, tmp, seed, a.epochs, a.budget),
                    "c plan": lambda: arm_plan(data, tmp, seed, a.epochs, a.budget, a.quick),
                    "d no proxy": lambda: arm_plan(data, tmp, seed, a.epochs, a.budget, a.quick, proxy=False)}
            arms = {name: run() for name, run in runs.items() if name[0] in a.arms}
            test = {}
            for name, arm in arms.items():
                row = {"seed": seed, "arm": name, "spent": arm["spent"], "budget": a.budget,
                       "trials": arm.get("trials", 1)}
                rows.append(row)
                if "refused" in arm:
                    row["refused"] = arm["refused"]
                    print(f"seed {seed} {name:11s} refused: {arm['refused']}")
                    continue
                _, val = scored(arm["model"], data, "val")
                test[name], t = scored(arm["model"], data, "test")
                row.update(val=[val.eer, val.low, val.high], test=[t.eer, t.low, t.high])
                print(f"seed {seed} {name:11s} val EER {val}  test EER {t}  spent {arm['spent']:6.1f} s "
                      f"({arm['spent'] / a.budget:.0%} of B), {row['trials']} trial(s)")
            for x, y in (("c plan", "a default"), ("c plan", "b flat TPE"), ("d no proxy", "b flat TPE")):
                if x in test and y in test:
                    vs = test[x].compare(test[y])
                    rows.append({"seed": seed, f"{x[0]}_minus_{y[0]}": [vs.difference, vs.low, vs.high]})
                    print(f"seed {seed} test {x[0]} - {y[0]}: {vs}")
            sys.stdout.flush()
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    arms = [r for r in rows if "arm" in r]
    spend_ok = all(r["spent"] <= 1.05 * r["budget"] for r in arms if r["arm"] != "a default")
    seeds = len({r["seed"] for r in arms})
    beats_a = sum(r["c_minus_a"][2] < 0 for r in rows if "c_minus_a" in r)   # a seed where (c) was refused: no
    not_worse_b = sum(r["c_minus_b"][1] <= 0 for r in rows if "c_minus_b" in r)
    versus = (f"; (c) beats (a) beyond noise on {beats_a} of {seeds} seed(s) (target 2 of 3); (c) no worse than (b) "
              f"beyond noise on {not_worse_b} of {seeds}") if "c" in a.arms else ""
    print(f"targets: spend within B + 5%: {'yes' if spend_ok else 'no'}{versus}")

if __name__ == "__main__":
    main()
