"""``facesearch study run`` on this machine: a supervisor, and what it shows while it runs (the caller's
``Watch``: the view's live view or log lines; ``run`` does not import the view)."""
from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable

import optuna

from ..spec import StudySpec
from ..storage import open_storage
from .recovery import settle
from .study import prepare_study
from .supervisor import Supervisor


# given the study and the supervisor, a context that yields what to call each second while the workers run
Watch = Callable[[optuna.Study, Supervisor], AbstractContextManager[Callable[[], None]]]


def supervise(study: optuna.Study, sup: Supervisor, watch: Watch) -> int:
    """Run the supervisor to the end under ``watch``; its exit status."""
    with watch(study, sup) as tick:
        return sup.run(study, on_tick=tick)


def run_study(spec: StudySpec, spec_path: Path, url: str | None, workers: int, gpus: list[int] | None,
              n_trials: int | None, timeout: float | None, *, watch: Watch,
              log: Callable[[str], None]) -> tuple[optuna.Study, int]:
    """Create or load the study, run ``workers`` local workers (one per GPU when given) to the end; the spec
    has passed ``preflight_study``. ``watch`` shows the run, ``log`` takes the supervisor's lines."""
    if gpus:
        workers = len(gpus)
    study = prepare_study(spec, open_storage(url))
    settle(study)
    sup = Supervisor(spec, spec_path, url, workers, gpus, n_trials, timeout, log=log)
    return study, supervise(study, sup, watch)
