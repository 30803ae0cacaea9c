"""``facesearch plan run|status`` and ``worker --plan`` with real processes on tiny synthetic faces: a plan of
three chained phases (a proxy, its promotion, a tuning phase) runs end to end with a second process following
it; a run killed mid-phase resumes without re-running a finished phase; an over-budget plan is fitted; a bad
phase stops everything before any trial with one line; ``plan status --json`` parses."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from search.plan.state import PlanState
from search.record import WORKER
from search.storage import open_storage
from tests.search.cli.test_cli_errors import cli, one_line_error

COMMON = {"model": "resnet_w", "n_out": 32, "batch_size": 8, "n_per_class": 2, "workers": 0, "augment": "none",
          "max_val_pairs": 120, "device": "cpu", "resolution": 32}
SPACE = {"width": {"type": "categorical", "choices": [0.125, 0.25]},
         "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}}
LIMIT = 600   # seconds any one process may take on a loaded 2-core machine
RETRAIN_ONLY = {"export": False, "report": False}   # for the tests of the phases; ``ran`` checks the whole finish


def write_plan(folder: Path, data: Path, name: str = "tiny", hours: float = 0.05, proxy_trials: int = 4,
               train: str = "train1", growth: float = 1, entries: list | None = None,
               finish: dict | None = None) -> Path:
    """proxy (24 identities, 1 epoch) -> full (its top 2, every identity, 2 epochs) -> tune (scheduler); phases
    grow into spare hours only when ``growth`` > 1 (the suite's runs keep their written trials). ``finish``
    adds to the finishing steps (``{"export": False, "report": False}``: retrain only, for a test about the
    phases: the ONNX export and the report take most of a tiny plan's finish)."""
    folder.mkdir(parents=True, exist_ok=True)
    where = {"train": str(data / train), "val": str(data / "val")}
    phases = {
        "proxy": {"fixed": {**COMMON, "max_identities": 24}, "space": SPACE,
                  "budget": {"n_trials": proxy_trials, "epochs": 1}},
        "full": {"from": {"study": "proxy", "top": 2}, "fixed": {**COMMON, "max_identities": 0}, "space": SPACE,
                 "budget": {"epochs": 2}},
        "tune": {"from": {"study": "full"}, "fixed": COMMON,
                 "space": {"scheduler": {"type": "categorical", "choices": ["cosine", "step"]}},
                 "budget": {"n_trials": 2, "epochs": 1}},
    }
    for phase, body in phases.items():
        (folder / f"{phase}.yaml").write_text(yaml.safe_dump({
            "name": phase, "data": where, "sampler": {"name": "random", "seed": 0}, "pruner": {"name": "none"},
            **body}))
    plan = folder / f"{name}.yaml"
    plan.write_text(yaml.safe_dump({"name": name, "hours": hours, "phases": entries or list(phases),
                                    "fit": {"min_resolution": 24, "min_identities": 12, "max_growth": growth},
                                    "calibration": {"share": 0.2}, "finish": {"epochs": 1, **(finish or {})}}))
    return plan


def facesearch(*args: str, env_extra: dict | None = None, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "search.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True, **kw)


def state_of(url: str, plan: str = "tiny") -> dict | None:
    if not Path(url).exists():
        return None
    return PlanState(open_storage(url), plan).load()


@pytest.fixture(scope="module")
def ran(synth_data, tmp_path_factory) -> dict:
    """The plan run by ``plan run`` (1 worker) with a second process following it (``worker --plan``)."""
    tmp = tmp_path_factory.mktemp("planrun")
    plan = write_plan(tmp, synth_data)
    url = str(tmp / "s.journal")
    follower = facesearch("worker", "--plan", str(plan), "--storage", url, "--worker-id", "7", cwd=tmp)
    runner = facesearch("plan", "run", str(plan), "--workers", "1", "--storage", url, cwd=tmp)
    out, _ = runner.communicate(timeout=LIMIT)
    follower_out, _ = follower.communicate(timeout=LIMIT)
    return {"tmp": tmp, "plan": plan, "url": url, "out": out, "code": runner.returncode,
            "follower_out": follower_out, "follower_code": follower.returncode, "follower_pid": follower.pid}


def test_plan_runs_end_to_end_and_finishes(ran):
    assert ran["code"] == 0, ran["out"]
    out = ran["out"]
    assert "plan tiny on 1 x cpu" in out and "share GPU-h" in out          # the fitted table first
    assert out.index("phase proxy:") < out.index("phase full:") < out.index("phase tune:")
    assert out.count("re-plan: measured pace") == 2                        # after each phase but the last
    where = {line.split(None, 2)[1]: line.split()[-1] for line in out.splitlines()
             if line.startswith("  export bundle") or line.startswith("  test scores")}
    bundle = ran["tmp"] / "_plans" / "tiny" / "bundle"
    assert where == {"bundle": str(bundle), "scores": str(bundle.parent / "test_scores.txt")}
    assert (bundle / "model.ts").is_file() and (bundle / "MODEL_CARD.md").is_file()
    pairs = (Path(yaml.safe_load((ran["tmp"] / "proxy.yaml").read_text())["data"]["val"]).parent / "test"
             / "test_pairs.csv").read_text().splitlines()
    scores = (bundle.parent / "test_scores.txt").read_text().splitlines()
    assert len(scores) == len(pairs) and all(len(s.split(",")) == 4 for s in scores)
    report = ran["tmp"] / "_plans" / "tiny" / "report"
    assert (report / "analysis.html").is_file() and "| proxy | done |" in (report / "phases.md").read_text()
    assert f"facesearch plan status {ran['plan']}" in out


def test_plan_status_json_parses_and_holds_every_phase(ran):
    done = cli("plan", "status", str(ran["plan"]), "--storage", ran["url"], "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["plan"] == "tiny" and status["state"] == "done" and status["active"] is None
    assert [p["name"] for p in status["phases"]] == ["proxy", "full", "tune"]
    storage = open_storage(ran["url"])
    for p in status["phases"]:
        assert p["status"] == "done" and p["spent_hours"] is not None and p["share_hours"] > 0
        study = optuna.load_study(study_name=p["name"], storage=storage)
        ended = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()
                 and t.state != optuna.trial.TrialState.FAIL]
        assert p["trials_run"] == len(ended) <= p["trials"]
    assert status["spent_hours"] >= status["calibration_hours"] + sum(p["spent_hours"] for p in status["phases"])
    assert status["left_hours"] == pytest.approx(status["hours"] - status["spent_hours"], abs=1e-3)
    assert set(status["finish"]) >= {"study", "trial", "run", "bundle", "scores", "test_eer", "report"}
    table = cli("plan", "status", str(ran["plan"]), "--storage", ran["url"])
    assert table.returncode == 0 and "proxy" in table.stdout and "export bundle" in table.stdout


def test_a_worker_following_the_plan_joins_the_phases_and_stops_at_the_end(ran):
    assert ran["follower_code"] == 0, ran["follower_out"]
    out = ran["follower_out"]
    joined = [line.split("joining phase ")[1].strip() for line in out.splitlines() if "joining phase " in line]
    assert len(joined) >= 2 and joined == [p for p in ("proxy", "full", "tune") if p in joined], out
    assert "this worker stops" in out
    storage = open_storage(ran["url"])
    mine = {name for name in joined for t in optuna.load_study(study_name=name, storage=storage).trials
            if t.user_attrs.get(WORKER, "").endswith(f":{ran['follower_pid']}")}
    assert mine, f"the follower ran no trial in {joined}"


def test_a_killed_plan_resumes_without_rerunning_a_finished_phase(synth_data, tmp_path):
    plan = write_plan(tmp_path, synth_data, proxy_trials=3, finish=RETRAIN_ONLY)   # the finish: the fixture's
    url = str(tmp_path / "s.journal")
    first = facesearch("plan", "run", str(plan), "--workers", "1", "--storage", url, cwd=tmp_path)
    deadline = time.time() + LIMIT
    while True:   # until the promotion phase has a trial running: the proxy phase is done by then
        assert first.poll() is None and time.time() < deadline, first.communicate()[0]
        state = state_of(url)
        if state and state["plan"].get("active") == "full" and "full" in optuna.get_all_study_names(
                open_storage(url)) and optuna.load_study(study_name="full", storage=open_storage(url)).get_trials(
                states=(optuna.trial.TrialState.RUNNING,)):
            break
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)   # the runner and anything in its session, mid-phase
    first.wait(timeout=60)
    proxy_before = [(t.number, t.state) for t in optuna.load_study(study_name="proxy",
                                                                    storage=open_storage(url)).trials]
    assert state_of(url)["phases"][0]["status"] == "done"

    again = facesearch("plan", "run", str(plan), "--workers", "1", "--storage", url, cwd=tmp_path)
    out, _ = again.communicate(timeout=LIMIT)
    assert again.returncode == 0, out
    assert "phase proxy: done before, not run again" in out and "phase full: resuming" in out
    proxy_after = [(t.number, t.state) for t in optuna.load_study(study_name="proxy",
                                                                   storage=open_storage(url)).trials]
    assert proxy_after == proxy_before
    final = state_of(url)
    assert final["plan"]["state"] == "done" and all(r["status"] == "done" for r in final["phases"])
    full = optuna.load_study(study_name="full", storage=open_storage(url))
    done = [t for t in full.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == final["phases"][1]["overrides"]["n_trials"]


def total_hours(stdout: str) -> float:
    """The fitted table's total GPU-hours (its 8th column)."""
    row = next(line for line in stdout.splitlines() if line.startswith("│ total"))
    return float(row.split("│")[8])


def test_an_over_budget_plan_is_fitted_and_a_dry_run_stores_nothing(ran, tmp_path):
    """The same phases with a wide proxy, priced by the calibration the first run stored: as written, at a
    budget between their floors and what they ask (fitted), and below their floors (refused)."""
    data = Path(yaml.safe_load((ran["tmp"] / "proxy.yaml").read_text())["data"]["train"]).parent
    wide = write_plan(tmp_path / "wide", data, name="wide", proxy_trials=12)
    before = Path(ran["url"]).read_bytes()
    args = ("plan", "run", str(wide), "--workers", "1", "--storage", ran["url"], "--dry-run", "--hours")
    written = cli(*args, "1")
    assert written.returncode == 0, written.stdout + written.stderr
    assert "fit: " not in written.stdout and "dry run: nothing was run or stored" in written.stdout
    wanted = total_hours(written.stdout)
    floors = cli(*args, "0.00001")
    line = one_line_error(floors, "even at every phase's floor", "over the 1e-05-hour budget")
    least = float(line.split("needs ")[1].split()[0])
    assert least < wanted
    fitted = cli(*args, f"{(least + wanted) / 2:.6f}")
    assert fitted.returncode == 0, fitted.stdout + fitted.stderr
    cuts = [line.removeprefix("fit: ") for line in fitted.stdout.splitlines() if line.startswith("fit: ")]
    assert cuts and total_hours(fitted.stdout) <= (least + wanted) / 2 + 1e-3
    for cut in cuts:
        phase, change = cut.split(": ", 1)
        if change.startswith("trials"):
            assert int(change.split("-> ")[1]) >= (2 if phase in ("proxy", "full") else 1)   # the promotion's k
        if change.startswith("epochs") and phase != "proxy":   # a full phase's epochs go after the proxy's fidelity
            assert "proxy: resolution 32 -> 24" in cuts and "proxy: identities 24 -> 12" in cuts, cuts
    assert Path(ran["url"]).read_bytes() == before


def test_a_bad_phase_stops_the_plan_before_any_trial_with_one_line(synth_data, tmp_path):
    plan = write_plan(tmp_path, synth_data)
    broken = yaml.safe_load((tmp_path / "tune.yaml").read_text())
    broken["data"]["train"] = str(tmp_path / "nowhere")
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(broken))
    url = tmp_path / "s.journal"
    done = cli("plan", "run", str(plan), "--workers", "1", "--storage", str(url))
    one_line_error(done, "nowhere")
    assert not url.exists() and not [p for p in tmp_path.iterdir() if p.is_dir()]   # nothing stored, no run folder


def test_the_old_plan_form_still_prices_with_a_notice(ran):
    old = cli("plan", str(ran["tmp"] / "proxy.yaml"), "--hours", "1", "--storage", ran["url"])
    assert old.returncode == 0, old.stderr
    assert "notice: `facesearch plan FILES...` is now `facesearch plan price FILES...`" in old.stderr
    assert "plan on 1 x" in old.stdout
    counted = cli("plan", str(ran["tmp"] / "proxy.yaml"), "--hours", "1", "--gpus", "3", "--storage", ran["url"],
                  "--format", "json")   # --gpus was a count before it took indices
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout)["gpus"] == 3 and "is now '--n-gpus 3'" in counted.stderr


def test_a_generous_budget_grows_the_phases_within_it(ran, tmp_path):
    """Hours to spare: the sampled phases get more trials than written, up to max_growth x theirs or the plan's
    max_trials; the promotion keeps its top k; the fitted total stays within the hours."""
    data = Path(yaml.safe_load((ran["tmp"] / "proxy.yaml").read_text())["data"]["train"]).parent
    roomy = write_plan(tmp_path / "roomy", data, name="roomy", growth=3,
                       entries=["proxy", "full", {"study": "tune", "max_trials": 5}])
    before = Path(ran["url"]).read_bytes()
    done = cli("plan", "run", str(roomy), "--workers", "1", "--storage", ran["url"], "--dry-run", "--hours", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    grown = dict(line.removeprefix("fit: ").split(": ", 1) for line in done.stdout.splitlines()
                 if line.startswith("fit: "))
    assert set(grown) == {"proxy", "tune"}, done.stdout
    assert grown["proxy"].startswith("trials 4 -> 12 ") and grown["tune"].startswith("trials 2 -> 5 ")
    assert total_hours(done.stdout) <= 1
    assert Path(ran["url"]).read_bytes() == before


def test_hours_a_phase_left_unspent_roll_forward_to_the_phases_after_it(ran, tmp_path):
    """The re-plan after the proxy phase, which spent a quarter of its share: the phases left share the budget
    less what it spent (all of the saving, not only their first shares), and grow into it."""
    from search.cost.calibration import stored_table
    from search.cost.datasize import DataSizes
    from search.plan.runner import Run, make_fit
    from search.plan.schema import load_plan

    data = Path(yaml.safe_load((ran["tmp"] / "proxy.yaml").read_text())["data"]["train"]).parent
    plan = load_plan(write_plan(tmp_path / "roll", data, name="roll", growth=50))   # no cap reached
    table = stored_table(open_storage(ran["url"]))
    label = state_of(ran["url"])["plan"]["device"]
    sizes = DataSizes(table.census)
    first = make_fit(Run(plan, ran["url"], 1.0, 1, None, "cpu", print, print), table, label, sizes, None, 0.0)
    written = sum(f.wanted_trials * f.phase.trial_seconds() for f in first.fits)
    hours = (written + first.reserve_s) * 1.6 / 3600   # room for some growth, not all of it
    run = Run(plan, ran["url"], hours, 1, None, "cpu", print, print)
    before = make_fit(run, table, label, sizes, None, 0.0)
    proxy = before.fits[0]
    spent = proxy.share_s / 4
    after = make_fit(run, table, label, sizes, {"proxy": {"name": "proxy", "status": "done", "spent_s": spent}},
                     0.0)
    left = [f for f in after.fits if f.name != "proxy"]
    assert sum(f.share_s for f in left) == pytest.approx(after.budget_s - spent, rel=1e-6)
    assert sum(f.share_s for f in left) > sum(f.share_s for f in before.fits[1:])
    tune = {f.name: f for f in before.fits}["tune"], {f.name: f for f in after.fits}["tune"]
    assert tune[1].phase.trials > tune[0].phase.trials >= 2
    assert before.total_s() <= hours * 3600 + 1e-6 and after.total_s() <= hours * 3600 + 1e-6
    # a phase that may grow runs up to its most trials while its share lasts; the promotion runs its k under its
    # share plus what the later phases grew (the re-plan can take an overrun back there)
    assert tune[0].overrides()["n_trials"] == 2 * 50 and tune[0].overrides()["trials"] == tune[0].phase.trials
    assert tune[0].overrides()["hours"] * 3600 == pytest.approx(tune[0].share_s, abs=1)
    grown = (tune[0].phase.trials - tune[0].wanted_trials) * tune[0].phase.trial_seconds()
    full = before.fits[1]
    assert full.overrides()["n_trials"] == 2
    assert full.overrides()["hours"] * 3600 == pytest.approx(full.share_s + grown, abs=1)


def phase_cells(page: str) -> list[list[str]]:
    """The rows of the first table after the plan section's heading, as text cells."""
    import re

    table = page.split('id="plan-tiny"', 1)[1].split("</table>", 1)[0]
    return [re.findall(r"<td>(.*?)</td>", row) for row in table.split("<tr>")[2:]]


def test_report_all_has_a_section_with_the_plan_phases(ran, tmp_path):
    done = cli("report", "--all", "--storage", ran["url"], "--out", str(tmp_path / "all"))
    assert done.returncode == 0, done.stdout + done.stderr
    for page in ((tmp_path / "all" / "analysis.html").read_text(),
                 (ran["tmp"] / "_plans" / "tiny" / "report" / "analysis.html").read_text()):   # the plan's own
        assert "Plan tiny: phases" in page and "facesearch:plan:tiny" not in page   # not among the studies
        rows = phase_cells(page)
        state = state_of(ran["url"])
        assert [r[0] for r in rows] == ["proxy", "full", "tune"] and all(r[1] == "done" for r in rows)
        for row, phase in zip(rows, state["phases"]):
            assert row[2] == f"{phase['trials_run']} / {phase['overrides']['n_trials']}"
            assert row[6] == f"trial {phase['best_number']}: {phase['best_value']:.2f}"
            assert row[5].endswith("%")


def test_the_dashboard_shows_the_plan_phases_in_the_plan_study_note(ran, tmp_path):
    from search.view.dashboard import dashboard_command, free_port
    from tests.search.view.test_dashboard import _get, _wait_for

    port, log = free_port(), tmp_path / "dashboard.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        process = subprocess.Popen(dashboard_command(ran["url"], "127.0.0.1", port, None), stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        summaries = {s["study_name"]: s for s in _wait_for(base, process, log)["study_summaries"]}
        detail = _get(f"{base}/api/studies/{summaries['facesearch:plan:tiny']['study_id']}")
    finally:
        process.terminate()
        process.wait(timeout=60)
    body = detail["note"]["body"]
    assert body.startswith("## plan tiny: done") and detail["note"]["version"] >= 1
    state = state_of(ran["url"])
    rows = [line for line in body.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0].lstrip("| ") for r in rows] == ["proxy", "full", "tune"]
    for row, phase in zip(rows, state["phases"]):
        assert f"| done | {phase['trials_run']} / {phase['overrides']['n_trials']} |" in row
        assert f"trial {phase['best_number']}: {phase['best_value']:.2f}" in row
    assert "export bundle" in body
