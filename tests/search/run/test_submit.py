"""What a cluster job shows and is given without a terminal: the worker's dated (or JSON) log lines, and the job
script ``study submit --dry-run`` prints (no Slurm needed; tests/test_slurm.py submits to a real one)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.search.cli.test_cli_errors import cli, one_line_error
from tests.search.run.test_workers import write_spec

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"


def worker(spec_path, url, *extra: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "search.cli", "worker", str(spec_path), "--storage", url, *extra],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_a_worker_logs_dated_lines_for_start_each_epoch_each_trial_exit_and_a_summary(synth_data, tmp_path):
    spec_path = write_spec(tmp_path / "s.yaml", synth_data, "logged", n_trials=1, epochs=2)
    out = worker(spec_path, str(tmp_path / "s.journal"), "--worker-id", "3")
    lines = out.strip().splitlines()
    assert all(re.match(ISO + " ", line) for line in lines), out
    text = "\n".join(line.split(" ", 1)[1] for line in lines)
    assert re.search(r"^worker 3 started: study logged, budget 1 trial\(s\)", text, re.M), text
    for k in (1, 2):
        assert re.search(rf"^trial 0 epoch {k}/2: loss [\d.]+, val EER [\d.]+%, lr [\d.e+-]+, \d+ img/s", text, re.M)
    assert re.search(r"^trial 0 complete: val EER [\d.]+%", text, re.M), text
    assert re.search(r"^worker 3 exiting: budget spent; ran 1 trial\(s\)$", text, re.M), text
    assert re.search(r"^summary: complete 1; budget 1", text, re.M), text


def test_log_format_json_gives_one_object_per_line(synth_data, tmp_path):
    spec_path = write_spec(tmp_path / "s.yaml", synth_data, "logged-json", n_trials=1, epochs=1)
    out = worker(spec_path, str(tmp_path / "s.journal"), "--log-format", "json")
    events = [json.loads(line) for line in out.strip().splitlines()]
    assert all(re.fullmatch(ISO, e["time"]) and e["message"] for e in events)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-2:] == ["exit", "summary"] and "trial" in kinds, kinds
    epoch = next(e for e in events if e["event"] == "epoch")
    assert (epoch["trial"], epoch["epoch"], epoch["epochs"]) == (0, 1, 1)
    assert all(isinstance(epoch[k], float) for k in ("loss", "val_eer", "lr", "images_per_s"))
    one_line_error(cli("worker", str(spec_path), "--log-format", "xml"), "--log-format 'xml'", "text, json")


def test_dry_run_prints_the_job_script_without_the_storage_url_and_writes_nothing(synth_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec_path = write_spec(tmp_path / "s.yaml", synth_data, "submitted", n_trials=4, epochs=1)
    url = "postgresql://alice:s3cret@db.example/optuna"
    out = cli("study", "submit", str(spec_path), "--array", "4", "--time", "4h", "--partition", "gpu",
              "--cpus-per-task", "8", "--sbatch", "qos=high", "--setup", "module load cuda", "--requeue",
              "--dry-run", "--storage", url)
    assert out.returncode == 0, out.stderr
    script = out.stdout
    for line in ("#SBATCH --array=0-3%4", "#SBATCH --time=240", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --qos=high", "#SBATCH --requeue", "#SBATCH --signal=USR2@180",
                 "module load cuda", "--worker-id $SLURM_ARRAY_TASK_ID", 'FACESEARCH_STORAGE="$(cat ',
                 "SLURM_TMPDIR"):
        assert line in script, (line, script)
    assert "s3cret" not in script and "alice" not in script
    assert list(tmp_path.iterdir()) == [spec_path], "a dry run writes nothing"


def test_submit_refuses_more_tasks_than_trials_and_a_signal_after_the_limit(synth_data, tmp_path):
    spec_path = write_spec(tmp_path / "s.yaml", synth_data, "too-many", n_trials=2, epochs=1)
    one_line_error(cli("study", "submit", str(spec_path), "--array", "3", "--dry-run"), "--array 3", "2 trials")
    one_line_error(cli("study", "submit", str(spec_path), "--time", "2m", "--signal-delay", "300", "--dry-run"),
                   "--signal-delay 300s")


def test_a_job_whose_worker_trained_nothing_is_not_requeued(tmp_path):
    """A time limit too short for start-up and one epoch must not requeue forever: progress is an epoch past
    where the trial's retry chain stood (a resumed trial announces its old epochs again) or a finished trial."""
    import optuna

    from search.record import RETRY_OF, WORKER
    from search.run.submit import trained

    study = optuna.create_study(storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "s.journal"))))
    first = study.ask()
    first.set_user_attr(WORKER, "node:1")
    for epoch in (1, 2, 3):
        first.report(0.5, epoch)
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial({}, user_attrs={RETRY_OF: first.number})
    retry = study.ask()
    retry.set_user_attr(WORKER, "node:2")
    for epoch in (1, 2, 3):   # replayed from the checkpoint: no new epoch yet
        retry.report(0.5, epoch)
    assert trained(study, "node:1") and not trained(study, "node:2") and not trained(study, "node:3")
    retry.report(0.4, 4)
    assert trained(study, "node:2")
