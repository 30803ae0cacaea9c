"""``facesearch quickstart``: the whole path on synthetic faces, on a laptop's CPU, in minutes, as a plan.

synthesise faces -> ``plan run quickstart`` (studies/plans/quickstart.yaml: networks and losses, then the
winner's learning rate, schedule and augmentation, under one budget) -> its finishing steps: retrain the
winner, export a bundle, score the test pairs, write the report.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

# sized to finish in a few minutes on 2 CPU cores (see the README for measured times)
SYNTH = {"identities": 200, "images_per_identity": 16, "size": 40, "seed": 0}


def run_quickstart(out: Path, workers: int = 2, log: Callable[[str], None] = print, live: bool = True,
                   print_table: Callable[[object], None] | None = None) -> dict:
    from facenet.preflight import check_writable
    from facenet.data.synth import synthesize

    from ..builtin import resolve_plan
    from .runner import Run, run_plan
    from .schema import load_plan
    from ..view.watch import console

    start = time.time()
    out = Path(out)
    data = out / "data"
    check_writable(out, "quickstart folder", "choose another --out")
    if not (data / "test" / "test_pairs.csv").exists():
        log(f"synthesising faces into {data} ...")
        synthesize(data, **SYNTH, progress=live)
    timings = {"data": time.time() - start}
    os.environ["FACESEARCH_DATA"] = str(data)
    os.environ["FACESEARCH_RUNS"] = str(out / "runs")
    url = str(out / "studies.journal")
    plan = load_plan(resolve_plan("quickstart"))
    screen = console()
    t0 = time.time()
    status = run_plan(Run(plan, url, plan.hours, workers, None, "auto", log, print_table or screen.print, live),
                      console=screen)
    timings["plan"] = time.time() - t0
    timings["total"] = time.time() - start
    return {"data": data, "storage": url, "plan": plan.name, "status": status, "timings": timings}
