"""CLI conventions: --version, --json read back as JSON with stable keys, study delete, durations on the
command line as in the YAML, --out for data synth, the storage bound to $FACESEARCH_STORAGE."""
from __future__ import annotations

import json
from importlib.metadata import version

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from search.run.study import prepare_study
from search.spec import parse_spec
from search.storage import open_storage
from tests.search.cli.test_cli_errors import cli

LR = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)


@pytest.fixture
def journal(tmp_path) -> str:
    """Study 'phase' with two complete trials (7.5 and 9.0), a cap-pruned and a failed one."""
    url = str(tmp_path / "s.journal")
    spec = parse_spec({"name": "phase", "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}})
    study = prepare_study(spec, open_storage(url))
    for value, lr in ((9.0, 1e-3), (7.5, 3e-3)):
        study.add_trial(create_trial(value=value, params={"lr": lr}, distributions={"lr": LR},
                                     user_attrs={"param_count": 1_000_000, "best_epoch": 2}))
    study.add_trial(create_trial(state=TrialState.PRUNED, params={"lr": 1e-3}, distributions={"lr": LR},
                                 user_attrs={"pruned_by": "cap", "prune_reason": "over the cap (not trained)"}))
    study.add_trial(create_trial(state=TrialState.FAIL, params={"lr": 1e-3}, distributions={"lr": LR},
                                 user_attrs={"fail_reason": "CUDA out of memory"}))
    return url


def test_version():
    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"facesearch {version('facesearch')}"


def test_json_outputs_parse_back_with_stable_keys(journal, monkeypatch):
    monkeypatch.setenv("FACESEARCH_STORAGE", journal)   # bound to --storage
    studies = json.loads(cli("studies", "--json").stdout)
    assert studies == [{"study": "phase", "trials": 4, "best_value": 7.5, "best_number": 1,
                        "counts": {"complete": 2, "pruned (cap)": 1, "failed": 1}}]
    status = json.loads(cli("study", "status", "phase", "--json").stdout)
    assert set(status) == {"study", "n_trials", "counts", "best_number", "trials", "slurm_jobs"}
    assert status["slurm_jobs"] == {}   # running trials under Slurm: none here
    assert [t["state"] for t in status["trials"]] == ["complete", "complete", "pruned", "fail"]
    assert status["trials"][2]["pruned_by"] == "cap" and status["trials"][3]["reason"] == "CUDA out of memory"
    best = json.loads(cli("best", "phase", "--json").stdout)
    assert best["study"] == "phase" and best["number"] == 1 and best["value"] == 7.5
    assert best["params"] == {"lr": 3e-3} and best["param_count"] == 1_000_000


def test_study_delete_asks_unless_yes(journal):
    refused = cli("study", "delete", "phase", "--storage", journal)   # no input: the confirmation aborts
    assert refused.returncode != 0 and optuna.get_all_study_names(open_storage(journal)) == ["phase"]
    done = cli("study", "delete", "phase", "--storage", journal, "--yes")
    assert done.returncode == 0 and "deleted study phase" in done.stdout
    assert optuna.get_all_study_names(open_storage(journal)) == []


def test_timeout_takes_durations_and_bad_ones_are_one_line(synth_data, tmp_path, monkeypatch):
    from tests.search.run.test_workers import write_spec

    spec = write_spec(tmp_path / "s.yaml", synth_data, "timed", n_trials=1, epochs=1)
    bad = cli("worker", str(spec), "--timeout", "soon")
    assert bad.returncode == 2 and "bad duration 'soon'" in bad.stderr
    monkeypatch.setenv("FACESEARCH_RUNS", str(tmp_path / "runs"))
    ran = cli("worker", str(spec), "--storage", str(tmp_path / "s.journal"), "--timeout", "1h30m")
    assert ran.returncode == 0 and "ran 1 trial(s)" in ran.stdout, ran.stderr


def test_data_synth_writes_to_out(tmp_path):
    out = cli("data", "synth", "--out", str(tmp_path / "faces"), "--identities", "12", "--images-per-identity", "4",
              "--size", "32")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "faces" / "val" / "val_pairs.csv").is_file()


def test_data_synth_old_positional_form_still_works_with_a_notice(tmp_path):
    out = cli("data", "synth", str(tmp_path / "faces"), "--identities", "12", "--images-per-identity", "4",
              "--size", "32")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "faces" / "val" / "val_pairs.csv").is_file()
    notice = [line for line in out.stderr.splitlines() if "--out" in line]
    assert notice == [f"note: 'data synth DIR' is now 'data synth --out {tmp_path / 'faces'}'"]


def test_builtin_studies_listed_and_run_by_name(synth_data, tmp_path, monkeypatch):
    listed = json.loads(cli("studies", "--builtin", "--json").stdout)
    names = [s["name"] for s in listed]
    assert {"quickstart", "baseline", "losses", "finetune"} <= set(names)
    assert all(s["description"] for s in listed), "every shipped study says what it asks"
    monkeypatch.chdir(tmp_path)   # no quickstart.yaml here: the name means the built-in one
    monkeypatch.setenv("FACESEARCH_DATA", str(synth_data))
    monkeypatch.setenv("FACESEARCH_RUNS", str(tmp_path / "runs"))
    ran = cli("worker", "quickstart", "--storage", str(tmp_path / "s.journal"), "--n-trials", "1")
    assert ran.returncode == 0 and "ran 1 trial(s)" in ran.stdout, ran.stderr
    unknown = cli("worker", "quikstart", "--storage", str(tmp_path / "s.journal"))
    assert unknown.returncode == 2 and "built-in studies: " in unknown.stderr and "quickstart" in unknown.stderr


def test_study_init_writes_a_spec_that_loads(tmp_path, monkeypatch):
    from search.spec import load_spec

    monkeypatch.chdir(tmp_path)
    assert cli("study", "init", "phase7").returncode == 0
    spec = load_spec(tmp_path / "phase7.yaml")
    assert spec.name == "phase7" and set(spec.space) == {"loss", "margin", "lr"} and spec.n_trials == 30
    again = cli("study", "init", "phase7")
    assert again.returncode == 2 and "exists" in again.stderr
