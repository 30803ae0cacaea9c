"""Workers that ``facesearch study run`` started never outlive it.

The supervisor names itself in the worker's environment (``SUPERVISOR_ENV``); such a worker asks Linux
to send it SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``); where that is not available it
watches its parent's pid instead. SIGTERM is what the worker already handles: its
running trial is marked interrupted (resumed on the next run) and it exits. Workers started by hand
(``facesearch worker``) carry no such variable and are tied to nothing.

How a supervised worker ended comes back the same way: the supervisor names a file (``RESULT_ENV``) and
the worker writes there the one line of the error it stopped on (``WorkerExit``), so the supervisor never
reads the worker's log to learn it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from facenet.errors import UserError

SUPERVISOR_ENV = "FACESEARCH_SUPERVISOR_PID"
RESULT_ENV = "FACESEARCH_WORKER_RESULT"
PR_SET_PDEATHSIG = 1
WATCH = 1.0          # seconds between looks at the parent pid (the fallback)


def tether_env(env: dict[str, str], result: Path | None = None) -> dict[str, str]:
    """The environment of a worker this process starts and supervises (writing how it ended to ``result``)."""
    return {**env, SUPERVISOR_ENV: str(os.getpid()), **({RESULT_ENV: str(result)} if result else {})}


@dataclass(frozen=True)
class WorkerExit:
    """How a supervised worker ended, as it wrote it: the error it stopped on ('' when it wrote none)."""

    error: str = ""
    user_error: bool = False     # a ``UserError`` (exit status 2): the study cannot run as it is

    @classmethod
    def read(cls, path: Path) -> "WorkerExit":
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):   # killed before it could write, or not supervised
            return cls()


@contextmanager
def reporting_exit() -> Iterator[None]:
    """In a supervised worker: write the error it stops on where its supervisor reads it."""
    path = os.environ.pop(RESULT_ENV, "")
    try:
        yield
    except Exception as e:
        if path:
            user = isinstance(e, UserError)
            Path(path).write_text(json.dumps(asdict(WorkerExit(str(e) if user else f"{type(e).__name__}: {e}",
                                                               user))))
        raise


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def _death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def tie_to_supervisor() -> bool:
    """In a worker started by a supervisor: SIGTERM to itself as soon as that supervisor is gone. Whether
    this process was started by a supervisor."""
    value = os.environ.pop(SUPERVISOR_ENV, "")   # popped: nothing this worker starts inherits the tie
    if not value.isdigit():
        return False
    parent = int(value)
    armed = _death_signal()
    if os.getppid() != parent:    # the supervisor died before the death signal was armed
        _terminate_self()
        return True
    if armed:
        return True

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH)
        _terminate_self()

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()
    return True
