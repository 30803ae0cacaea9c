"""``facesearch quickstart``: the whole path on synthetic faces, on a laptop's CPU, in minutes.

synthesise faces -> run studies/quickstart.yaml with 2 workers -> retrain the best trial
-> export a bundle -> score the test pairs -> write the report.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

# sized to finish in under a minute on 2 CPU cores (see the README for measured times)
SYNTH = {"identities": 200, "images_per_identity": 16, "size": 40, "seed": 0}


def run_quickstart(out: Path, workers: int = 2, retrain_epochs: int = 10, log: Callable[[str], None] = print,
                   live: bool = True) -> dict:
    from facenet.data.folders import PairList
    from facenet.data.synth import synthesize
    from facenet.eval.evaluate import eer, write_scores
    from facenet.eval.scoring import score_pairs
    from facenet.export import export_bundle, onnx_available

    from facenet.preflight import check_writable

    from ..builtin import builtin_path
    from ..run.launch import supervise
    from ..run.preflight import preflight_study
    from ..run.study import prepare_study
    from ..run.supervisor import Supervisor
    from ..spec import load_spec
    from ..storage import artifact_dir, open_storage
    from ..view.report import write_report
    from ..view.watch import console, watcher
    from .retrain import retrain

    start = time.time()
    out = Path(out)
    data = out / "data"
    timings = {}
    check_writable(out, "quickstart folder", "choose another --out")
    if not (data / "test" / "test_pairs.csv").exists():
        log(f"synthesising faces into {data} ...")
        synthesize(data, **SYNTH, progress=live)
    timings["data"] = time.time() - start
    os.environ["FACESEARCH_DATA"] = str(data)
    url = str(out / "studies.journal")
    os.environ["FACESEARCH_RUNS"] = str(out / "runs")
    spec_path = builtin_path("quickstart")
    spec = preflight_study(load_spec(spec_path), url)
    study = prepare_study(spec, open_storage(url))
    sup = Supervisor(spec, spec_path, url, workers, None, None, None, log=log)
    t0 = time.time()
    code = supervise(study, sup, watcher(console(), live))
    if code:
        raise SystemExit(code)
    timings["study"] = time.time() - t0

    t0 = time.time()
    record = retrain(study, out / "runs", epochs=retrain_epochs, log=log, progress=live,
                     artifacts=artifact_dir(url))
    timings["retrain"] = time.time() - t0
    bundle = out / "bundle"
    onnx = onnx_available()   # the core install runs the quickstart too, with a TorchScript-only bundle
    if not onnx:
        log("bundle without ONNX: the export extra is not installed (pip install 'facesearch[export]')")
    export_bundle(record.run_dir, bundle, spec.param_cap, {"study": spec.name, "trial": record.trial}, onnx)
    pairs = PairList.read(data / "test", "test_pairs.csv")
    scores = score_pairs(bundle, pairs)
    write_scores(out / "test_scores.txt", scores, pairs)
    report = write_report(study, out / "report")
    timings["total"] = time.time() - start
    return {"data": data, "storage": url, "study": spec.name, "best_trial": record.trial,
            "search_val_eer": record.search_val_eer, "val_eer": record.val_eer,
            "test_eer": eer(pairs.labels, scores), "run": record.run_dir, "bundle": bundle,
            "scores": out / "test_scores.txt", "report": report, "timings": timings}
