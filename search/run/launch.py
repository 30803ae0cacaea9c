"""``facesearch study run`` on this machine: a supervisor and its live view (log lines without a terminal)."""
from __future__ import annotations

import time
from pathlib import Path

import optuna

from ..spec import StudySpec
from ..storage import open_storage
from .recovery import settle
from .study import prepare_study
from .supervisor import Supervisor


def supervise(study: optuna.Study, sup: Supervisor, console, live: bool = True) -> int:
    """Run the supervisor to the end, redrawing the live view each second (on a terminal) or writing a line
    per finished trial through the supervisor's log (to a log file); its exit status."""
    if not live:
        from ..view.status import summary_line
        from ..view.trial_log import TrialLog

        trials = TrialLog(study, sup.log)
        try:
            return sup.run(study, on_tick=trials.tick)
        finally:   # a closing summary, also when the study stopped on an error
            trials.tick()
            sup.log(f"summary: {summary_line(study, sup.n_trials)}")
    from rich.live import Live

    from ..view.live import progress_view

    start = time.time()
    with Live(progress_view(study, sup, start), console=console, refresh_per_second=1, transient=False) as view:
        return sup.run(study, on_tick=lambda: view.update(progress_view(study, sup, start)))


def run_study(spec: StudySpec, spec_path: Path, url: str | None, workers: int, gpus: list[int] | None,
              n_trials: int | None, timeout: float | None, console,
              live: bool = True) -> tuple[optuna.Study, int]:
    """Create or load the study, run ``workers`` local workers (one per GPU when given) to the end; the spec
    has passed ``preflight_study``. ``live``: the live view on a terminal, else plain log lines."""
    if gpus:
        workers = len(gpus)
    study = prepare_study(spec, open_storage(url))
    settle(study)
    from ..logline import log_line

    log = console.log if live else log_line
    sup = Supervisor(spec, spec_path, url, workers, gpus, n_trials, timeout, log=log)
    return study, supervise(study, sup, console, live)
