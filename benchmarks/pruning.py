"""What median pruning saves: the same quickstart-sized study with the spec's median pruner and with none.

studies/quickstart.yaml (same sampler and seed, its enqueued points, 20 trials, one worker,
in process: optuna + search.run.objective.Objective + search.spec) on a freshly synthesised
quickstart data set, run twice. Counted: training epochs consumed (intermediate values
reported) and the best val EER of each. A few hundred val pairs measure an EER near 20 %
only to a few points, so the pair of runs is repeated for several sampler seeds
(``--seeds``) and totals are compared. Targets: >= 35 % fewer epochs, best EER at most
1 point worse. Takes a few minutes on 2 CPU cores; ``--quick`` runs 6 trials, one seed.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from optuna.trial import TrialState

from common import face_set, open_study, parse, parser, quickstart_spec, ratio_line, temp_dir, timed
from search.run.objective import Objective
from search.finish.quickstart import SYNTH
from search.spec import StudySpec
from search.run.worker import optimize_until


def run_study(spec: StudySpec, work: Path) -> tuple[int, float, float]:
    """(epochs trained, best val EER, seconds) of one run of ``spec``."""
    study = open_study(spec, work / "study.journal")
    with timed() as t:
        optimize_until(study, Objective(spec, work / "runs", "cpu", log=lambda m: None), spec.n_trials)
    print(f"-- pruner {spec.pruner['name']}: {len(study.trials)} trials in {t():.0f} s")
    for trial in study.trials:
        value = f"{trial.value:6.2f}" if trial.value is not None else "     -"
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        took = (trial.datetime_complete - trial.datetime_start).total_seconds()
        print(f"  #{trial.number:<3}{trial.state.name:<9}{len(trial.intermediate_values):>2} epochs {took:5.1f} s  "
              f"EER {value}  {params}")
    epochs = sum(len(trial.intermediate_values) for trial in study.trials)
    complete = [trial.value for trial in study.trials if trial.state == TrialState.COMPLETE]
    return epochs, min(complete) if complete else float("nan"), t()


def pruner_changes(text: str) -> dict:
    """'k=v,k=v' -> {k: v}, values read as YAML scalars (numbers stay numbers)."""
    import yaml

    return {k.strip(): yaml.safe_load(v) for k, v in (item.split("=", 1) for item in text.split(",") if item)}


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated sampler seeds; each runs both studies; "
                                                    "totals count")
    p.add_argument("--pruner", default="", help="changes to the spec's pruner, e.g. "
                                                "'n_warmup_steps=2' or 'name=percentile,percentile=60'")
    a = parse(p, argv)
    synth = {k: v for k, v in SYNTH.items() if k != "seed"}
    if a.quick:
        a.trials, a.seeds = min(a.trials, 6), a.seeds.split(",")[0]   # --trials may go lower still
        synth.update(identities=40, images_per_identity=6)
    results = {"median": [], "none": []}   # (epochs, best EER, seconds) per seed
    with face_set(a.data, **synth) as data:
        for seed in (int(s) for s in a.seeds.split(",")):
            spec = quickstart_spec(data, n_trials=a.trials)
            sampler = {**spec.sampler, "seed": seed}
            median = {**spec.pruner, **pruner_changes(a.pruner)}
            print(f"== quickstart study, {a.trials} trials, sampler {sampler}, pruner {median}")
            for label, pruner in (("median", median), ("none", {"name": "none"})):
                with temp_dir() as work:
                    results[label].append(run_study(dataclasses.replace(spec, sampler=sampler, pruner=pruner), work))
    for label, runs in results.items():
        print(f"pruner {label:<7} epochs {' + '.join(str(r[0]) for r in runs)} = {sum(r[0] for r in runs)}, "
              f"best val EER {', '.join(f'{r[1]:.2f}%' for r in runs)}, {sum(r[2] for r in runs):.0f} s")
    e_on, e_off = (sum(r[0] for r in results[k]) for k in ("median", "none"))
    best_on, best_off = (sum(r[1] for r in results[k]) / len(results[k]) for k in ("median", "none"))
    ratio_line(e_on / e_off, f"epochs with median pruning {e_on} vs none {e_off}: "
                             f"{100 * (1 - e_on / e_off):.0f}% fewer; mean best val EER {best_on:.2f}% vs "
                             f"{best_off:.2f}% ({best_on - best_off:+.2f} points)")


if __name__ == "__main__":
    main(sys.argv[1:])
