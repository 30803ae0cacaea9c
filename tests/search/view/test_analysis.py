"""``facesearch report --all`` over a storage holding the plan's phases (losses, architectures, train2,
fine-tuning, a retrained model), all scored on one val list with saved scores: the questions
answered with intervals and verdicts, the experiment record as CSV and Markdown with the plan's
columns, a PNG beside every figure, and both report pages rendering in a real headless browser
with no request leaving the machine."""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from facenet.eval.stats import ScoredPairs
from search.record import RETRAIN, VAL_EER_CI, VAL_SCORES
from search.storage import open_storage
from search.view.analysis import QUESTIONS
from search.view.experiments import COLUMNS
from search.view.report import write_report
from tests.search.cli.test_cli_errors import cli
from tests.search.view.test_noise import scores, val_list

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PLAN_COLUMNS = ["number", "name", "model", "loss", "optimizer", "scheduler", "lr", "weight_decay",
                "batch_size", "n_out", "margin", "scale", "augment", "training set", "loss per epoch",
                "val EER per epoch", "final val EER", "param_count", "notes"]
CAT = CategoricalDistribution
LR = FloatDistribution(1e-4, 1e-1, log=True)


class Phase:
    """One study: trials with real saved scores on the shared val list."""

    def __init__(self, storage, root, name: str, train: str, distributions: dict, initial_model: str = ""):
        self.study = optuna.create_study(study_name=name, storage=storage)
        self.root, self.name, self.train = root, name, train
        self.dists, self.initial = distributions, initial_model

    def add(self, separation: float, seed: int, state=TrialState.COMPLETE, same_as: np.ndarray | None = None,
            param_count: int = 1_000_000, **params) -> np.ndarray:
        labels, left, right, _ = val_list()
        s = scores(separation, seed) if same_as is None else same_as.copy()
        number = len(self.study.trials)
        path = self.root / f"{self.name}-{number}.npz"
        scored = ScoredPairs(labels, s, left, right)
        scored.save(path)
        iv = scored.interval()
        config = {"model": "resnet_w", "loss": "softmax", "optimizer": "adam", "scheduler": "step",
                  "lr": 1e-3, "weight_decay": 0.0, "batch_size": 32, "n_out": 128, "margin": 0.3,
                  "scale": 30.0,
                  "augment": "baseline", "train_path": f"/data/{self.train}", "initial_model": self.initial,
                  **params}
        curve = [iv.eer + 6, iv.eer]
        history = [{"epoch": e, "loss": 4.0 / e, "val_eer": v, "lr": config["lr"], "seconds": 1.0}
                   for e, v in enumerate(curve, 1)]
        done = state == TrialState.COMPLETE
        stopped = {} if done else {"pruned_by": "median", "prune_reason": "median rule at epoch 2"}
        self.study.add_trial(create_trial(
            state=state, value=iv.eer if done else None, params=params,
            distributions={k: self.dists[k] for k in params}, intermediate_values=dict(enumerate(curve, 1)),
            user_attrs={"config": config, "history": history, "param_count": param_count, "best_epoch": 2,
                        VAL_EER_CI: [iv.low, iv.high], VAL_SCORES: str(path), **stopped}))
        return s


@pytest.fixture(scope="module")
def storage_with_phases(tmp_path_factory):
    root = tmp_path_factory.mktemp("phases")
    url = str(root / "all.journal")
    storage = open_storage(url)
    losses = Phase(storage, root, "losses", "train1", {"loss": CAT(["arcface", "cosface", "softmax"]),
                                                         "lr": LR, "scheduler": CAT(["step", "cosine"]),
                                                         "augment": CAT(["none", "baseline"])})
    best = losses.add(2.6, 1, loss="arcface", lr=1e-3, scheduler="cosine", augment="baseline")
    losses.add(0, 0, same_as=best, loss="cosface", lr=2e-3, scheduler="step", augment="baseline")   # a twin
    losses.add(0.8, 2, loss="softmax", lr=3e-2, scheduler="step", augment="none")
    losses.add(1.0, 3, loss="softmax", lr=5e-4, scheduler="cosine", augment="none")
    losses.add(2.0, 4, loss="arcface", lr=1e-2, scheduler="step", augment="none")
    losses.add(0.5, 5, TrialState.PRUNED, loss="softmax", lr=6e-2, scheduler="step", augment="none")
    arch = Phase(storage, root, "architectures", "train1", {"model": CAT(["resnet_w", "mobilenet"]),
                                                            "width": CAT([0.25, 0.5])})
    arch.add(2.2, 6, model="resnet_w", width=0.5, param_count=2_800_000)
    arch.add(1.9, 7, model="resnet_w", width=0.25, param_count=700_000)
    arch.add(1.2, 8, model="mobilenet", width=0.5, param_count=1_500_000)
    train2 = Phase(storage, root, "train2", "train2", {"lr": LR})
    train2.add(1.5, 9, lr=1e-3)
    train2.add(1.4, 10, lr=3e-3)
    pre = root / "runs" / "architectures" / "retrain-0000"
    pre.mkdir(parents=True)
    (pre / "config.json").write_text(json.dumps({"train_path": "/data/train1"}))
    finetune = Phase(storage, root, "finetune", "train2", {"lr": LR}, initial_model=str(pre / "best.pt"))
    finetune.add(2.4, 11, lr=1e-4)
    finetune.add(2.3, 12, lr=3e-4)
    # the losses phase's best trial, retrained: its record, its config and its scores beside it
    run = root / "runs" / "losses" / "retrain-0000"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(losses.study.trials[0].user_attrs["config"]))
    labels, left, right, _ = val_list()
    retrained = ScoredPairs(labels, scores(2.8, 13), left, right)
    retrained.save(run / "val_scores.npz")
    iv = retrained.interval()
    losses.study.set_user_attr(RETRAIN, {
        "trial": 0, "run_dir": str(run), "val_eer": iv.eer, "params": 1_000_000,
        "val_eer_ci": [iv.low, iv.high], "val_scores": str(run / "val_scores.npz"),
        "roc": {"labels": labels.tolist(), "scores": retrained.scores.tolist()}})
    return url, root


@pytest.fixture(scope="module")
def pages(storage_with_phases, tmp_path_factory):
    """``report --all`` and the losses study's own report, written once for the tests below."""
    url, _ = storage_with_phases
    out = tmp_path_factory.mktemp("pages")
    done = cli("report", "--all", "--out", str(out / "all"), "--storage", url)
    assert done.returncode == 0, done.stderr
    one = write_report(optuna.load_study(study_name="losses", storage=open_storage(url)), out / "one")
    return out / "all" / "analysis.html", one


def test_report_all_answers_the_plans_questions(pages):
    out = pages[0].parent
    text = pages[0].read_text()
    for key, title, _ in QUESTIONS:
        assert f'<h2 id="{key}">' in text and title in text
    assert 'class="note"' not in text, "every question has evidence in this storage"
    # loss: the twin cannot be told from the best, softmax is worse (paired on the saved scores)
    assert "arcface and cosface cannot be told apart on this val list" in text
    assert "softmax is worse than arcface" in text and "(paired)" in text
    assert "Scheduler cosine has the lowest best val EER" in text and "lr ranks" in text
    assert "augmentation in study losses" in text and "model in study architectures" in text
    # training data pooled over the phases, the retrained model included
    section = text[text.index('id="training-data"'):text.index('id="architecture"')]
    for regime in ("<td>train1</td>", "<td>train2</td>", "<td>train1 -&gt; train2 (fine-tuned)</td>"):
        assert regime in section
    assert "PED-ANOVA" in text and "mean decrease impurity" in text and "fANOVA" in text
    assert text.count("window.PlotlyConfig") == 1 and not re.search(r"<script[^>]*\ssrc=", text)

    # a PNG beside every interactive figure, and every figure on the page
    figures = out / "figures"
    pages = sorted(p.stem for p in figures.glob("*.html"))
    assert pages == sorted(p.stem for p in figures.glob("*.png")) and len(pages) >= 8
    assert sorted(re.findall(r'id="fig-([^"]+)"', text)) == pages
    for png in figures.glob("*.png"):
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 5000
    assert {"architecture-size", "losses-schedule-slice", "losses-importances", "losses-contour"} <= {*pages}

    with (out / "experiments.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS and all(c in COLUMNS for c in PLAN_COLUMNS)
    assert len(rows) == 6 + 3 + 2 + 2 + 1          # every trial, and the retrained model
    first = rows[0]
    assert (first["number"], first["name"]) == ("1", "losses/trial-0000")
    assert (first["loss"], first["training set"]) == ("arcface", "train1")
    assert first["loss per epoch"] == "4 2" and len(first["val EER per epoch"].split()) == 2
    low, value, high = (float(first[f"best val EER{end}"]) for end in (" low", "", " high"))
    assert low <= value <= high
    assert rows[5]["state"] == "PRUNED" and rows[5]["notes"].startswith("pruned (median)")
    assert rows[6]["name"] == "losses/retrain-0000" and rows[6]["state"] == "RETRAINED"   # after its study
    assert {r["training set"] for r in rows if r["study"] == "finetune"} == {"train1 -> train2 (fine-tuned)"}
    md = (out / "experiments.md").read_text().splitlines()
    assert md[2].startswith("| number | name | study |") and len(md) == 4 + len(rows)


def test_report_needs_a_name_or_all(storage_with_phases, tmp_path):
    url, _ = storage_with_phases
    for args in ((), ("losses", "--all")):
        done = cli("report", *args, "--out", str(tmp_path / "x"), "--storage", url)
        assert done.returncode == 2 and "give a study name or --all" in done.stderr


def rendered(page, tmp_path) -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran in headless Chromium, and the URLs the page itself asked
    for over the network (the browser's own update and sign-in pings are initiated by no page)."""
    log = tmp_path / f"{page.stem}-net.json"
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}",
         "--host-resolver-rules=MAP * ~NOTFOUND",       # nothing can leave the machine, whatever asks
         f"--log-net-log={log}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180, check=True).stdout
    net = json.loads(log.read_text())
    start = net["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    asked = [e["params"]["url"] for e in net["events"] if e["type"] == start and "url" in e.get("params", {})
             and e["params"].get("initiator") != "not an origin"]
    return dom, asked


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs Debian's chromium)")
def test_report_pages_render_offline_in_a_real_browser(pages, tmp_path):
    analysis, one = pages
    for page in (analysis, one, one.parent / "figures" / "roc.html"):   # roc.html: the shared plotly.min.js
        dom, asked = rendered(page, tmp_path)
        assert asked == [], f"{page.name} asked the network for {asked}"
        divs = re.findall(r'<div id="fig-[^"]+"|class="plotly-graph-div"', page.read_text())
        drawn = dom.count('class="plot-container plotly"')
        assert drawn >= 1 and drawn == len([d for d in divs if "plotly-graph-div" in d]), page.name
        assert dom.count('class="main-svg"') >= drawn, f"{page.name}: plotly drew its SVG in every figure"
