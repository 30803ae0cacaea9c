"""``facesearch study run`` on this machine: checks that need no worker, then a supervisor and its live view."""
from __future__ import annotations

import time
from pathlib import Path

import optuna

from ..spec import StudySpec, smallest_param_count
from ..storage import StorageError, open_storage
from .recovery import settle
from .study import prepare_study
from .supervisor import Supervisor


def check_cap(spec: StudySpec) -> None:
    """Refuse a space where no configuration fits the parameter cap, before any worker starts."""
    count, point = smallest_param_count(spec)
    if count > spec.param_cap:
        raise StorageError(f"{spec.source}: no configuration in the space fits the {spec.param_cap:,} parameter "
                           f"cap; the smallest is {count:,} ({', '.join(f'{k}={v}' for k, v in point.items())})")


def check_gpus(gpus: list[int]) -> None:
    import torch

    from facenet.errors import ConfigError

    n = torch.cuda.device_count()
    bad = [g for g in gpus if g < 0 or g >= n]
    if bad:
        raise ConfigError(f"--gpus {','.join(map(str, gpus))}: GPU {bad[0]} does not exist "
                          f"({n} visible{': 0..' + str(n - 1) if n else ''})")


def supervise(study: optuna.Study, sup: Supervisor, console, live: bool = True) -> int:
    """Run the supervisor to the end, redrawing the live view each second; its exit status."""
    if not live:
        return sup.run(study)
    from rich.live import Live

    from ..view.live import progress_view

    start = time.time()
    with Live(progress_view(study, sup, start), console=console, refresh_per_second=1, transient=False) as view:
        return sup.run(study, on_tick=lambda: view.update(progress_view(study, sup, start)))


def run_study(spec: StudySpec, spec_path: Path, url: str | None, workers: int, gpus: list[int] | None,
              n_trials: int | None, timeout: float | None, console) -> tuple[optuna.Study, int]:
    """Check, create or load the study, run ``workers`` local workers (one per GPU when given) to the end."""
    check_cap(spec)
    if gpus:
        check_gpus(gpus)
        workers = len(gpus)
    study = prepare_study(spec, open_storage(url))
    settle(study)
    sup = Supervisor(spec, spec_path, url, workers, gpus, n_trials, timeout, log=console.log)
    return study, supervise(study, sup, console)
