"""What a worker knows of the Slurm job it runs in (from the environment Slurm gives each task)."""
from __future__ import annotations

import os


def slurm_job() -> str | None:
    """``JOBID``, or ``ARRAYJOBID_TASKID`` for a task of an array (what ``squeue`` and ``scancel`` take)."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None


def running_jobs(trials) -> dict[int, str]:
    """Running trial number -> the Slurm job running it (for ``study status``)."""
    from optuna.trial import TrialState

    from ..record import SLURM_JOB

    return {t.number: t.user_attrs[SLURM_JOB] for t in trials
            if t.state == TrialState.RUNNING and t.user_attrs.get(SLURM_JOB)}


def jobs_line(trials) -> str | None:
    """``running in Slurm jobs: 812_0 (trial 4), 812_1 (trial 5)``, or None when none runs under Slurm."""
    jobs = running_jobs(trials)
    return ("running in Slurm jobs: " + ", ".join(f"{job} (trial {n})" for n, job in jobs.items())) if jobs else None
