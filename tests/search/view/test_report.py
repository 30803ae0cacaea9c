"""The study report over a real journal study: every section, figure file and table."""
from __future__ import annotations

import csv
import json
import re
import statistics

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from search.view.report import SECTIONS, write_report
from search.storage import open_storage

DISTS = {"model": CategoricalDistribution(["resnet_w", "mobilenet"]),
         "loss": CategoricalDistribution(["arcface", "softmax"]),
         "lr": FloatDistribution(1e-4, 1e-1, log=True)}
# (model, loss, lr, per-epoch val EER): complete trials, two models x two losses
COMPLETE = [("resnet_w", "arcface", 1e-3, [20.0, 12.0, 10.0]),
            ("resnet_w", "softmax", 3e-3, [25.0, 18.0, 16.0]),
            ("resnet_w", "arcface", 1e-2, [22.0, 14.0, 13.0]),
            ("mobilenet", "softmax", 2e-4, [30.0, 24.0, 22.0]),
            ("mobilenet", "arcface", 5e-4, [26.0, 19.0, 17.0]),
            ("mobilenet", "softmax", 5e-2, [35.0, 31.0, 33.0])]


def _attrs(model: str, loss: str, lr: float, curve: list[float]) -> dict:
    history = [{"epoch": e, "loss": 5.0 / e, "val_eer": v, "lr": lr, "seconds": 1.5} for e, v in enumerate(curve, 1)]
    return {"config": {"model": model, "loss": loss, "lr": lr, "width": 0.25, "epochs": 3}, "param_count": 1_200_000,
            "history": history, "seconds": 4.5, "device": "cpu"}


def _trial(model, loss, lr, curve, state=TrialState.COMPLETE, **extra):
    values = dict(enumerate(curve, 1))
    best = min(values, key=values.get) if values else None
    done = state == TrialState.COMPLETE
    # a stored interval (no score file): comparisons fall back to the unpaired difference
    finished = {"best_epoch": best, "val_eer_ci": [min(curve) - 2.5, min(curve) + 2.5]} if done else {}
    attrs = {**_attrs(model, loss, lr, curve), **finished, **extra}
    return create_trial(state=state, value=min(curve) if state == TrialState.COMPLETE else None,
                        params={"model": model, "loss": loss, "lr": lr}, distributions=DISTS,
                        user_attrs=attrs, intermediate_values=values)


@pytest.fixture
def study(tmp_path) -> optuna.Study:
    s = optuna.create_study(study_name="phase1", storage=open_storage(str(tmp_path / "s.journal")),
                            direction="minimize")
    s.set_user_attr("description", "architectures and losses <first phase>")
    s.set_user_attr("facesearch:spec", json.dumps({"name": "phase1", "param_cap": 11_500_000}))
    for row in COMPLETE:
        s.add_trial(_trial(*row))
    s.add_trial(_trial("mobilenet", "softmax", 3e-2, [40.0, 38.0], TrialState.PRUNED,
                       prune_reason="median rule at epoch 2: val EER 38.00%", pruned_by="median"))
    s.add_trial(_trial("resnet_w", "arcface", 1e-3, [], TrialState.PRUNED, param_count=12_000_000,
                       prune_reason="12,000,000 parameters over the 11,500,000 cap (not trained)", pruned_by="cap"))
    s.add_trial(_trial("resnet_w", "softmax", 1e-3, [], TrialState.FAIL, fail_reason="CUDA out of memory"))
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 0], 100)
    scores = np.where(labels == 1, rng.normal(0.6, 0.15, 200), rng.normal(0.2, 0.15, 200))
    s.set_user_attr("retrain", {"run_dir": "runs/phase1/retrain-0000", "best_pt": "runs/phase1/retrain-0000/best.pt",
                                "val_eer": 9.5, "trial": 0,
                                "roc": {"labels": labels.tolist(), "scores": scores.round(6).tolist()}})
    return optuna.load_study(study_name="phase1", storage=open_storage(str(tmp_path / "s.journal")))


def test_report_sections_figures_and_tables(study, tmp_path):
    out = tmp_path / "report"
    page = write_report(study, out)
    assert page == out / "report.html"
    text = page.read_text()
    for key, title, _ in SECTIONS:
        assert f'<h2 id="{key}">' in text and title in text
    assert "Study phase1" in text and "architectures and losses &lt;first phase&gt;" in text
    assert "Best trial 0" in text and "10.00% [7.5, 12.5]" in text
    notes = re.findall(r'<h2 id="([^"]+)">[^<]*</h2>\s*<p class="note">', text)
    assert notes == ["rungs", "proxy"], "every section but those of features it does not use is drawn"
    figures = ["history", "importances", "intermediate", "parallel", "slice", "contour-1", "contour-2", "roc", "det"]
    for name in figures:
        assert f'id="fig-{name}"' in text
        assert (out / "figures" / f"{name}.html").stat().st_size > 1000
        png = (out / "figures" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000, f"{name}.png is a drawn static figure"
    assert sorted(p.stem for p in (out / "figures").glob("*.png")) == sorted(figures), "a PNG per figure"
    assert (out / "figures" / "plotly.min.js").exists()
    assert text.count("window.PlotlyConfig") == 1, "plotly.js inlined exactly once"
    assert not re.search(r"<script[^>]*\ssrc=", text), "no script loaded from elsewhere"

    with (out / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(study.trials) == 9
    assert list(rows[0]) == ["number", "state", "val_eer", "val_eer_low", "val_eer_high", "best_epoch",
                             "epochs_run", "param_count", "seconds", "estimate_s", "device", "model", "loss", "lr",
                             "pruned_by", "reason"]
    assert (rows[0]["val_eer_low"], rows[0]["val_eer_high"]) == ("7.5", "12.5")
    assert rows[6]["val_eer_low"] == ""
    assert [r["state"] for r in rows] == ["COMPLETE"] * 6 + ["PRUNED", "PRUNED", "FAIL"]
    assert rows[0]["val_eer"] == "10.0" and rows[0]["best_epoch"] == "3" and rows[0]["epochs_run"] == "3"
    assert rows[6]["val_eer"] == "38.0" and rows[6]["epochs_run"] == "2" and "median rule" in rows[6]["reason"]
    assert rows[7]["val_eer"] == "" and "over the" in rows[7]["reason"]
    assert [r["pruned_by"] for r in rows[6:]] == ["median", "cap", ""], "the report names the rule that pruned"
    assert "1 pruned (median), 1 pruned (cap), 1 failed" in text
    assert rows[8]["reason"] == "CUDA out of memory"

    md = (out / "trials.md").read_text().splitlines()
    assert md[2].startswith("| number | state | val_eer | val_eer_low | val_eer_high |")
    assert md[3].startswith("| --- |")
    assert len(md) == 4 + 9 and all(line.count("|") == md[2].count("|") for line in md[2:])

    with (out / "eer_by_model.csv").open() as f:
        by_model = {r["model"]: r for r in csv.DictReader(f)}
    for model in ("resnet_w", "mobilenet"):
        values = [min(curve) for m, _, _, curve in COMPLETE if m == model]
        assert float(by_model[model]["best val EER %"]) == min(values)
        assert float(by_model[model]["median val EER %"]) == statistics.median(values)
        assert int(by_model[model]["complete trials"]) == len(values)
        assert by_model[model]["comparison"] == ("" if model == "resnet_w" else "unpaired")   # no score files
    # best with its stored interval; the median's interval resamples the trials (no score files here)
    assert re.search(r"<td>resnet_w</td><td>10.00% \[7.5, 12.5\]</td><td>0</td>"
                     r"<td>13.00% \[[\d.]+, [\d.]+\]</td><td>3</td><td></td><td>leader</td>", text)
    # mobilenet's best is 7 points behind: 7 +- hypot(2.5, 2.5) from the two stored intervals
    assert re.search(r"<td>mobilenet</td><td>17.00% \[14.5, 19.5\]</td><td>4</td><td>22.00% [^<]*</td>"
                     r"<td>3</td><td>\+7.00 \[\+3.5, \+10.5\]</td><td>worse</td>", text)
    assert ("mobilenet is worse than resnet_w: its best trial is +7.00 [+3.5, +10.5] points behind (unpaired)"
            in text)
    loss = (out / "eer_by_loss.csv").read_text().splitlines()
    assert loss[0].startswith("loss,best val EER %,best low,best high,best trial,median val EER %")
    assert loss[1].startswith("arcface,10.0,7.5,12.5,0,13.0,")
    assert "The same in every complete trial" not in text   # model and loss vary; nothing else is recorded
    # the top trials: the best, then 2 (13 +- 2.5: 3 +- 3.5 behind) within noise of it, then worse ones
    top = re.findall(r"<tr><td>(\d)</td><td>(\d+)</td><td>([^<]*)</td><td>([^<]*)</td><td>[^<]*</td>"
                     r"<td>(\w*)</td><td>([\w ]+)</td></tr>", text)
    assert [(r[1], r[5]) for r in top] == [("0", "best"), ("2", "within noise"), ("1", "worse"),
                                           ("4", "worse"), ("3", "worse")]


def test_report_of_empty_study_has_notes(tmp_path):
    study = optuna.create_study(study_name="empty", storage=open_storage(str(tmp_path / "e.journal")))
    study.add_trial(create_trial(state=TrialState.FAIL, params={}, distributions={},
                                 user_attrs={"fail_reason": "data folder missing"}))
    page = write_report(study, tmp_path / "out")
    text = page.read_text()
    assert "No complete trial yet" in text and "no retrained run" in text and "needs at least 1 complete trial" in text
    assert all(f'<h2 id="{key}">' in text for key, _, _ in SECTIONS)
    assert "fig-" not in text
    with (tmp_path / "out" / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["state"] for r in rows] == ["FAIL"] and rows[0]["reason"] == "data folder missing"
