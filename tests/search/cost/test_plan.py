"""Multi-fidelity with real short trials: a proxy study (24 px, 12 identities, 1 epoch) whose best 3
trials are promoted to full fidelity (32 px, every identity, 2 epochs) and ranked there, with the
report's Spearman section; successive-halving rungs reported; ``facesearch plan price`` over the two
chained phases (exit 2 over budget, ``--fit`` fits); and every shipped study loads and chains."""
from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from search.cost.calibrate import calibrate
from search.cost.plan import chained
from search.record import TrialRecord
from search.run.study import prepare_study
from search.run.worker import run_worker
from search.spec import apply_from, load_spec
from search.storage import open_storage
from search.view.proxy import proxy_pairs, spearman
from search.view.report import write_report
from search.view.rungs import rung_rows
from tests.search.cli.test_cli_errors import cli, one_line_error

STUDIES = Path(__file__).resolve().parents[3] / "studies"
SPACE = {"width": {"type": "categorical", "choices": [0.125, 0.25]},
         "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}}
COMMON = {"model": "resnet_w", "n_out": 32, "batch_size": 8, "n_per_class": 2, "workers": 0,
          "augment": "none", "max_val_pairs": 120, "device": "cpu"}


def write(path: Path, data: Path, body: dict) -> Path:
    path.write_text(yaml.safe_dump({"data": {"train": str(data / "train1"), "val": str(data / "val")},
                                    "space": SPACE, "sampler": {"name": "random", "seed": 0}, **body}))
    return path


@pytest.fixture(scope="module")
def phases(synth_data, tmp_path_factory) -> dict:
    """The proxy study run (5 trials), then its promotion queued and run; paths and storage."""
    tmp = tmp_path_factory.mktemp("plan")
    proxy = write(tmp / "proxy.yaml", synth_data, {
        "name": "proxy", "fixed": {**COMMON, "resolution": 24, "max_identities": 12},
        "pruner": {"name": "none"}, "budget": {"n_trials": 5, "epochs": 1}})
    full = write(tmp / "full.yaml", synth_data, {
        "name": "full", "from": {"study": "proxy", "top": 3},
        "fixed": {**COMMON, "resolution": 32, "max_identities": 0}, "pruner": {"name": "none"},
        "budget": {"epochs": 2}})
    url = str(tmp / "s.journal")
    run_worker(load_spec(proxy), url, device="cpu", log=lambda m: None)
    promoted = apply_from(load_spec(full), open_storage(url))
    study = prepare_study(promoted, open_storage(url))
    queued = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    run_worker(promoted, url, device="cpu", log=lambda m: None)
    return {"proxy": proxy, "full": full, "url": url, "queued": queued, "tmp": tmp}


def trials(url: str, name: str):
    return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials(deepcopy=False)


def test_promotion_enqueues_exactly_the_top_k_at_full_fidelity(phases):
    proxy = trials(phases["url"], "proxy")
    best = sorted((t for t in proxy if t.state == TrialState.COMPLETE), key=lambda t: (t.value, t.number))[:3]
    assert len(best) == 3, "the proxy study completes at least 3 trials"
    queued = phases["queued"]
    assert [t.system_attrs["fixed_params"] for t in queued] == [t.params for t in best]   # queued points
    assert [TrialRecord.of(t).promoted_from for t in queued] == \
        [{"study": "proxy", "trial": t.number, "value": t.value} for t in best]

    full = trials(phases["url"], "full")
    assert len(full) == 3 and all(t.state == TrialState.COMPLETE for t in full)   # n_trials defaults to top
    for t, source in zip(full, best):
        config = TrialRecord.of(t).config
        assert t.params == source.params
        assert (config["resolution"], config["max_identities"], config["epochs"]) == (32, 0, 2)
        proxy_config = TrialRecord.of(source).config
        assert (proxy_config["resolution"], proxy_config["max_identities"]) == (24, 12)
        assert "seconds" in TrialRecord.of(t).estimate


def test_report_shows_the_proxys_rank_correlation(phases):
    study = optuna.load_study(study_name="full", storage=open_storage(phases["url"]))
    page = write_report(study, phases["tmp"] / "report").read_text()
    pairs = proxy_pairs(study.get_trials(deepcopy=False))
    assert len(pairs) == 3
    rho = spearman([p[2] for p in pairs], [p[3] for p in pairs])
    section = page[page.index('<h2 id="proxy">'):page.index('<h2 id="trials">')]
    assert "over 3 promoted trials" in section
    assert (f"<b>{rho:.2f}</b>" in section) if rho == rho else "undefined" in section
    for number, proxy_trial, _, _ in pairs:
        assert f"<td>{number}</td><td>{proxy_trial}</td>" in section


def test_successive_halving_rungs_are_reported(synth_data, tmp_path):
    spec = load_spec(write(tmp_path / "sh.yaml", synth_data, {
        "name": "sh", "fixed": {**COMMON, "resolution": 24, "max_identities": 12},
        "pruner": {"name": "successive_halving", "reduction_factor": 2},
        "budget": {"n_trials": 5, "epochs": 2}}))
    url = str(tmp_path / "s.journal")
    run_worker(spec, url, device="cpu", log=lambda m: None)
    study = optuna.load_study(study_name="sh", storage=open_storage(url))
    rows = rung_rows(study, {"name": "successive_halving", "reduction_factor": 2}, 2)
    assert [(r["rung"], r["epoch"]) for r in rows] == [(0, 1), (1, 2)]
    # which trials the rule stops depends on their EERs: assert only what holds whatever those come out to
    trained = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    assert rows[0]["reached"] == len(trained)
    assert rows[0]["went_on"] == sum(max(t.intermediate_values) > 1 for t in trained)
    assert rows[0]["went_on"] + rows[0]["stopped"] == rows[0]["reached"]
    assert rows[1]["reached"] == rows[0]["went_on"]
    # every pruned trial is counted once, at the rung where it stopped; none at its last epoch (the rung
    # at epoch 2): a trial that trained its full budget completes
    pruned = [t for t in trained if t.state == TrialState.PRUNED]
    assert all(max(t.intermediate_values) == 1 and t.user_attrs["pruned_by"] == "successive_halving"
               for t in pruned)
    assert [r["stopped"] for r in rows] == [len(pruned), 0]
    assert all(t.state == TrialState.COMPLETE for t in trained if max(t.intermediate_values) == 2)
    status = cli("study", "status", "sh", "--storage", url)
    assert status.returncode == 0 and "rungs of the successive_halving pruner" in status.stdout


def test_plan_exits_2_over_budget_and_fit_fits(phases):
    out = phases["tmp"] / "calibration.json"
    table = calibrate([phases["proxy"], phases["full"]], open_storage(str(phases["tmp"] / "c.journal")),
                      device="cpu", out=out, steps=2, warmup=1, eval_images=32, log=lambda m: None,
                      min_seconds=0.2)
    assert len(table.entries) == 4 and out.exists()   # 2 widths x 2 resolutions
    specs = [str(phases["full"]), str(phases["proxy"])]   # any order: from: sets it
    fits = cli("plan", "price", *specs, "--hours", "1", "--calibration", str(out))
    assert fits.returncode == 0, fits.stderr
    assert "fits (1)" in fits.stdout and not set("│┃━") & set(fits.stdout)   # piped: a plain table
    plan = json.loads(cli("plan", *specs, "--hours", "1", "--calibration", str(out), "--format", "json").stdout)
    rows = plan["phases"]
    assert [r["phase"] for r in rows] == ["proxy", "full"] and plan["fits"]
    assert (rows[1]["from"], rows[1]["top"]) == ("proxy", 3)
    needed = sum(r["gpu_hours"] for r in rows)
    tight = f"{needed / 3:.6g}"                                                  # a third of that

    over = cli("plan", "price", *specs, "--hours", tight, "--calibration", str(out))
    one_line_error(over, "the plan needs", "GPU-hours", "over the", "rerun with --fit")
    fitted = cli("plan", "price", *specs, "--hours", tight, "--calibration", str(out), "--fit")
    assert fitted.returncode == 0, fitted.stderr
    changes = re.findall(r"fit: (\w+): (n_trials|top) (\d+) -> (\d+)", fitted.stdout)
    assert changes and all(int(new) < int(old) for _, _, old, new in changes)
    assert re.search(r"fits \(", fitted.stdout)

    one_line_error(cli("plan", "price", *specs, "--hours", "1", "--calibration",
                       str(phases["tmp"] / "none.json")),
                   "calibration file not found")


def test_every_shipped_study_loads_and_promotions_follow_their_proxies(monkeypatch):
    monkeypatch.setenv("FACESEARCH_DATA", "/data/kaist-face")
    monkeypatch.setenv("PRETRAINED", "runs/architectures/best.pt")
    paths = sorted(STUDIES.glob("*.yaml"))
    specs = {p.stem: load_spec(p) for p in paths}
    assert all(name == spec.name for name, spec in specs.items())
    order = [spec.name for spec, _ in chained(paths)]
    for spec in specs.values():
        if spec.from_ is not None:
            assert order.index(spec.from_.study) < order.index(spec.name)
        if spec.from_ is not None and spec.from_.top:
            proxy = specs[spec.from_.study]
            assert proxy.space == spec.space, f"{spec.name} promotes points of {proxy.name}'s space"
            assert spec.fixed["resolution"] > proxy.fixed["resolution"] and spec.epochs > proxy.epochs
    assert {"losses-proxy", "hyperparams-proxy", "architectures-proxy"} <= set(specs)
