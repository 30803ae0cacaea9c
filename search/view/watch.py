"""Watching a study run on this machine: the terminal, and what ``run.launch.supervise`` shows while the
workers run (the live view on a terminal, else a log line per finished trial). ``run`` calls these back; it
does not import the view."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import optuna
from rich.console import Console

from .status import summary_line
from .trial_log import TrialLog

Tick = Callable[[], None]


def console() -> Console:
    """A terminal's own width; piped output (logs, CI) gets room for a whole trial row per line."""
    return Console() if sys.stdout.isatty() else Console(width=200)


@contextmanager
def log_lines(study: optuna.Study, sup) -> Iterator[Tick]:
    """No terminal: a line per finished trial through the supervisor's log, and a closing summary (also
    when the study stopped on an error)."""
    trials = TrialLog(study, sup.log)
    try:
        yield trials.tick
    finally:
        trials.tick()
        sup.log(f"summary: {summary_line(study, sup.n_trials)}")


def live_view(screen: Console):
    """On a terminal: the live view, redrawn each second."""
    from rich.live import Live

    from .live import progress_view

    @contextmanager
    def watch(study: optuna.Study, sup) -> Iterator[Tick]:
        start = time.time()
        with Live(progress_view(study, sup, start), console=screen, refresh_per_second=1, transient=False) as view:
            yield lambda: view.update(progress_view(study, sup, start))

    return watch


def watcher(screen: Console, live: bool):
    """What ``supervise`` shows: the live view on ``screen``, or log lines."""
    return live_view(screen) if live else log_lines
