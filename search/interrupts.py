"""Stop signals that never cut a storage write in half.

A worker or a supervisor stops on a signal by raising from its handler, and Python runs a handler between
any two bytecodes of the main thread. Raised between Optuna's journal making its lock file and the ``try``
that removes it, the exception leaves the lock behind: every process of the study, the stopping one first
(it marks its trial interrupted), then waits out Optuna's 30 s grace period before it may write again.

Code that must not be cut runs ``uninterrupted()``; a handler calls ``raise_when_safe(e)``, which raises ``e`` at
once, or as the outermost section ends. Below every other module of ``search``: it imports nothing of it.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

_main = threading.local()   # handlers run in the main thread only: a section in another thread defers nothing


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold a signal's exception (``raise_when_safe``) until this section ends, then raise it."""
    depth = getattr(_main, "depth", 0)
    _main.depth = depth + 1
    try:
        yield
    finally:
        _main.depth = depth
        pending = getattr(_main, "pending", None)
        if not depth and pending is not None:
            _main.pending = None
            raise pending


def raise_when_safe(e: BaseException) -> None:
    """From a signal handler: raise ``e`` now, or when the section the main thread is in ends (the first
    signal's exception wins)."""
    if getattr(_main, "depth", 0):
        if getattr(_main, "pending", None) is None:
            _main.pending = e
        return
    raise e
