"""What a worker knows of the Slurm job it runs in (from the environment Slurm gives each task)."""
from __future__ import annotations

import os


def slurm_job() -> str | None:
    """``JOBID``, or ``ARRAYJOBID_TASKID`` for a task of an array (what ``squeue`` and ``scancel`` take)."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None
