"""``Tracking``: run events queued from the training thread and sent to every backend by one daemon thread.

The training thread only puts small records on a queue (microseconds), whatever the backends do. A backend
whose check or call raises (a server that does not answer, a full disk) costs one warning line and is
dropped for the rest of the process: the trial goes on untracked there, never failed.
"""
from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any, Callable

from .base import EpochMetrics, RunEnd, RunInfo, Tracker
from .registry import tracker_class

CLOSE_WAIT = 60.0   # seconds close() waits for the queue to drain before it gives up on what is left


class Tracking:
    """The configured backends behind one queue; with no backend every method is a no-op."""

    def __init__(self, trackers: list[Tracker], log: Callable[[str], None] = print):
        self.trackers, self.log = trackers, log
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._broken: set[str] = set()

    def __enter__(self) -> "Tracking":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __bool__(self) -> bool:
        return bool(self.trackers)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.trackers if t.name not in self._broken]

    # ---- what the training side calls (cheap: a queue put)
    def study_start(self, study: str, description: str = "", settings: dict[str, Any] | None = None) -> None:
        self._put("study_start", study, description, settings or {})

    def study_end(self, study: str, summary: dict[str, Any]) -> None:
        self._put("study_end", study, summary)

    def run_start(self, run: RunInfo) -> None:
        self._put("run_start", run)

    def epoch(self, run: RunInfo, metrics: EpochMetrics) -> None:
        self._put("epoch", run, metrics)

    def run_end(self, run: RunInfo, end: RunEnd) -> None:
        self._put("run_end", run, end)

    def artifacts(self, run: RunInfo, paths: list[Path]) -> None:
        self._put("artifacts", run, [Path(p) for p in paths if Path(p).exists()])

    def close(self, wait: float = CLOSE_WAIT) -> None:
        """Send what is queued (waiting at most ``wait`` seconds), then close every backend."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(wait)
        if self._thread.is_alive():
            self.log(f"warning: tracking: {self._queue.qsize()} event(s) not sent after {wait:.0f}s "
                     f"({', '.join(self.names)} too slow); the study's own record is complete")
        self._thread = None

    # ---- the tracking thread
    def _put(self, method: str, *args) -> None:
        if not self.trackers:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="facesearch-tracking", daemon=True)
            self._thread.start()
        self._queue.put((method, args))

    def _drain(self) -> None:
        for tracker in self.trackers:
            self._call(tracker, "check", ())
        while (item := self._queue.get()) is not None:
            for tracker in self.trackers:
                self._call(tracker, *item)
        for tracker in self.trackers:
            self._call(tracker, "close", ())

    def _call(self, tracker: Tracker, method: str, args: tuple) -> None:
        if tracker.name in self._broken:
            return
        try:
            getattr(tracker, method)(*args)
        except Exception as e:   # never the trial's problem: one line, then this backend is off
            self._broken.add(tracker.name)
            message = " ".join(str(e).split())[:300] or type(e).__name__
            self.log(f"warning: tracking: {tracker.name} {tracker.target or ''} failed ({message}); "
                     f"not logging there for the rest of this process")


def open_tracking(targets: dict[str, str], runs_root: str | Path, log: Callable[[str], None] = print) -> Tracking:
    """A ``Tracking`` over ``{backend: target}`` (see ``registry.BACKENDS``); empty targets: a no-op one."""
    return Tracking([tracker_class(name)(target, Path(runs_root)) for name, target in targets.items()], log)
