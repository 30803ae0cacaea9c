"""How many local workers this machine holds: one per GPU, or on a CPU one per core that memory can feed.

``study run --workers N`` is checked against it before any worker starts: 0 or fewer is an error, more than
the machine holds is an error unless ``--force-workers`` (each worker is a process with torch and a model: a
thousand of them exhaust memory long before they train faster).
"""
from __future__ import annotations

import os

from facenet.errors import ConfigError

from ..spec import StudySpec

CPU_WORKER_BYTES = 512 << 20   # what one CPU worker takes at least: torch, a small model, its batches


def available_memory() -> int | None:
    """Bytes the kernel says can be used without swapping (Linux); None where that is not known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def uses_gpu(spec: StudySpec, gpus: list[int] | None) -> bool:
    import torch

    device = str(spec.fixed.get("device", "auto"))
    return bool(gpus) or device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def capacity(spec: StudySpec, gpus: list[int] | None = None) -> tuple[int, str]:
    """(workers this machine holds for the spec, what bounds them, in words)."""
    if uses_gpu(spec, gpus):
        import torch

        n = len(gpus) if gpus else torch.cuda.device_count()
        return max(n, 1), f"{n} GPU(s), one worker each"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    memory = available_memory()
    fed = memory // CPU_WORKER_BYTES if memory is not None else cores
    if fed < cores:
        return max(1, fed), f"{memory / 2**30:.1f} GiB of free memory at {CPU_WORKER_BYTES >> 20} MiB per CPU worker"
    return cores, f"{cores} CPU core(s)"


def check_workers(workers: int, spec: StudySpec, gpus: list[int] | None = None, force: bool = False) -> None:
    """Refuse a worker count below 1, or above what the machine holds unless ``force``."""
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1 (worker processes on this machine)")
    if force:
        return
    most, why = capacity(spec, gpus)
    if workers > most:
        raise ConfigError(f"--workers {workers}: this machine holds {most} ({why}); use --workers {most}, or add "
                          f"--force-workers to start {workers} anyway")
