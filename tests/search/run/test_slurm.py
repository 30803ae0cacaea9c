"""``facesearch study submit`` on a real Slurm: Debian's slurm-wlm (slurmctld, slurmd and munge on this one
node), started by the fixture when it can (skipped, with the reason, where it cannot: not root, not installed).

A 2-task array runs a study; both tasks get the walltime signal mid-trial (the signal Slurm sends before the
time limit, sent at once with ``scancel --signal`` so the test does not wait for a clock); each task stops its
trial, queues it again and requeues its job; the requeued jobs resume the trials from their checkpoints.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.search.run.test_interrupted import wait_for
from tests.search.run.test_proxy import free_port
from tests.search.run.test_workers import trials_of, write_spec

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "scancel", "srun")


def slurm_missing() -> str | None:
    """Why a one-node Slurm cannot start here, or None."""
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs (run the tests as root, as CI does)"
    missing = [d for d in DAEMONS if not (shutil.which(d) or Path("/usr/sbin", d).exists())]
    if missing:
        return f"{', '.join(missing)} not found; install Debian's slurm-wlm and munge (.ci/run does)"
    if not Path("/etc/munge/munge.key").exists():
        return "/etc/munge/munge.key is missing (Debian's munge package creates it)"
    return None


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


SLURM_CONF = """ClusterName=facesearch-test
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge/munge.sock
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


@pytest.fixture(scope="module")
def slurm():
    """A one-node Slurm in a temporary folder on free ports; yields the environment its commands need."""
    why = slurm_missing()
    if why:
        pytest.skip(f"no Slurm: {why}")
    folder = Path(tempfile.mkdtemp(prefix="facesearch-slurm-"))
    for sub in ("state", "spool", "munge"):
        (folder / sub).mkdir()
    shutil.chown(folder / "munge", "munge", "munge")
    folder.chmod(0o711)   # munged (its own user) must reach its socket folder, and insists every user can
    conf = folder / "slurm.conf"
    host = socket.gethostname().split(".")[0]
    conf.write_text(SLURM_CONF.format(host=host, folder=folder, cpus=os.cpu_count() or 1,
                                      ctld_port=free_port(), d_port=free_port()))
    env = dict(os.environ, SLURM_CONF=str(conf))
    started = []
    try:
        subprocess.run(["runuser", "-u", "munge", "--", _sbin("munged"), f"--socket={folder}/munge/munge.sock",
                        f"--pid-file={folder}/munge/munged.pid", f"--log-file={folder}/munge/munged.log",
                        f"--seed-file={folder}/munge/seed"], check=True, capture_output=True, text=True)
        started.append(folder / "munge" / "munged.pid")
        for daemon, args in (("slurmctld", ["-i"]), ("slurmd", [])):
            subprocess.run([_sbin(daemon), *args], env=env, check=True, capture_output=True, text=True)
            started.append(folder / f"{daemon}.pid")

        def idle():
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            return out.returncode == 0 and out.stdout.strip() == "idle"

        deadline = time.time() + 90
        while not idle():
            if time.time() > deadline:
                tail = (folder / "slurmd.log").read_text(errors="replace").strip().splitlines()[-1:]
                pytest.skip(f"Slurm did not start within 90s: {tail}")
            time.sleep(0.5)
        yield env
    except subprocess.CalledProcessError as e:
        pytest.skip(f"Slurm did not start: {' '.join(map(str, e.cmd[:1]))}: {e.stderr.strip()[-300:]}")
    finally:
        subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True)
        for pid_file in reversed(started):   # the daemons this fixture started, by their pids
            stop_daemon(pid_file)
        shutil.rmtree(folder, ignore_errors=True)


def stop_daemon(pid_file: Path) -> None:
    """SIGTERM, then SIGKILL once it has had 30 s."""
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 30
        while time.time() < deadline:
            os.kill(pid, 0)
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):   # gone (or never wrote its pid)
        pass


def squeue(env: dict, job: str) -> list[tuple[str, str, str]]:
    """(task id, state, reason) of the job's array tasks still known to squeue."""
    out = subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%i %T %r"], env=env, capture_output=True,
                         text=True)
    return [tuple(line.split()) for line in out.stdout.splitlines() if line.strip()]


def test_study_submit_survives_the_walltime_signal_and_the_requeue_resumes(slurm, synth_data, tmp_path):
    epochs = 16
    spec_path = write_spec(tmp_path / "s.yaml", synth_data, "walltime", n_trials=2, epochs=epochs)
    url = str(tmp_path / "s.journal")   # one node: a journal is safe here
    env = dict(slurm, OMP_NUM_THREADS="1")
    submitted = subprocess.run([sys.executable, "-m", "search.cli", "study", "submit", str(spec_path), "--array", "2",
                                "--time", "10m", "--gpus-per-task", "0", "--requeue", "--storage", url],
                               env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job = submitted.stdout.split("submitted Slurm job ")[1].split(":")[0]
    (url_file,) = (tmp_path / "walltime" / "slurm").glob("storage-url-*")
    assert stat.S_IMODE(url_file.stat().st_mode) == 0o600 and url_file.read_text() == url
    assert url not in (tmp_path / "walltime" / "slurm" / f"{job}_submission.sh").read_text(), "the URL is in no script"

    def both_mid_trial():
        running = [t for t in trials_of(url, "walltime") if t.state == TrialState.RUNNING]
        mid = [t for t in running if t.intermediate_values and max(t.intermediate_values) < epochs - 4]
        return mid if len(mid) == 2 else None

    stopped = wait_for("both tasks past a trial's first epoch", both_mid_trial, limit=400)
    status = subprocess.run([sys.executable, "-m", "search.cli", "study", "status", "walltime", "--storage", url],
                            env=env, capture_output=True, text=True, timeout=120)
    assert f"running in Slurm jobs: {job}_" in status.stdout, status.stdout
    # the walltime warning, now: what Slurm sends --signal-delay seconds before the limit
    subprocess.run(["scancel", "--signal=USR2", job], env=env, check=True, timeout=60)

    def requeued():   # Slurm holds a requeued batch job about two minutes; release it at once
        tasks = squeue(env, job)
        for task, state, reason in tasks:
            if state == "PENDING" and reason == "BeginTime":
                subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], env=env,
                               capture_output=True)
        trials = trials_of(url, "walltime")
        done = sum(t.state == TrialState.COMPLETE for t in trials) == 2
        return done and not squeue(env, job)

    wait_for("the requeued jobs to finish the study", requeued, limit=600, every=1)
    trials = trials_of(url, "walltime")
    for t in stopped:
        first = trials[t.number]
        assert first.state == TrialState.FAIL and first.user_attrs["fail_reason"] == "interrupted by SIGUSR2"
        retry = [r for r in trials if r.user_attrs.get("retry_of") == t.number]
        assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE, [r.user_attrs for r in retry]
        assert "resumed" in retry[0].user_attrs, "the requeued job started the trial over"
        assert retry[0].user_attrs["slurm_job"].startswith(f"{job}_")
    logs = "".join(p.read_text() for p in (tmp_path / "walltime" / "slurm").glob(f"{job}_*_log.out"))
    assert logs.count("requeueing the job") == 2 and "interrupted by SIGUSR2; queued again" in logs
    assert "resumed" in logs   # the worker of a requeued job says where it picked the trial up
    restarts = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True).stdout
    assert restarts.count("Restarts=1") == 2, restarts
    print(logs)   # with -s: what a user reads in the task logs


def test_sbatch_refusing_the_job_is_one_line_and_leaves_no_url_file(slurm, synth_data, tmp_path):
    spec_path = write_spec(tmp_path / "s.yaml", synth_data, "refused", n_trials=1, epochs=1)
    out = subprocess.run([sys.executable, "-m", "search.cli", "study", "submit", str(spec_path), "--partition",
                          "nosuch", "--gpus-per-task", "0", "--storage", str(tmp_path / "s.journal")],
                         env=slurm, capture_output=True, text=True, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stdout + out.stderr
    assert lines[0].startswith("error: sbatch refused the job:") and "partition" in lines[0], lines
    assert not list((tmp_path / "refused" / "slurm").glob("storage-url-*"))


def test_plan_submit_runs_the_plan_in_task_0_with_a_follower_in_task_1(slurm, synth_data, tmp_path):
    """A 2-task array on a tiny plan: task 0's ``plan run`` calibrates, runs the phases and finishes; task 1's
    ``worker --plan`` joins the phases and stops when the plan is finishing; the plan ends finished."""
    from search.plan.state import FINISHED
    from tests.search.plan.test_plan_run import RETRAIN_ONLY, state_of, write_plan

    plan = write_plan(tmp_path, synth_data, name="slurmplan", finish=RETRAIN_ONLY)   # export, report: test_plan_run
    url = str(tmp_path / "s.journal")
    submitted = subprocess.run([sys.executable, "-m", "search.cli", "plan", "submit", str(plan), "--array", "2",
                                "--time", "30m", "--gpus-per-task", "0", "--requeue", "--storage", url],
                               env=dict(slurm, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=120,
                               cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job = submitted.stdout.split("submitted Slurm job ")[1].split(":")[0]
    assert "plan slurmplan (task 0 runs it, 1 follow)" in submitted.stdout, submitted.stdout
    wait_for("the plan to finish and its job to end",
             lambda: (state_of(url, "slurmplan") or {"plan": {}})["plan"].get("state") == FINISHED
             and not squeue(slurm, job), limit=600, every=1)
    folder = tmp_path / "slurmplan" / "slurm"
    orchestrator, follower = ((folder / f"{job}_{k}_0_log.out").read_text() for k in (0, 1))
    assert "phase proxy:" in orchestrator and "plan slurmplan done" in orchestrator, orchestrator
    assert "plan slurmplan: joining phase proxy" in follower and "this worker stops" in follower, follower
