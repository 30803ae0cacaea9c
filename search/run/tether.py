"""Workers that ``facesearch study run`` started never outlive it.

The supervisor names itself in the worker's environment (``SUPERVISOR_ENV``); such a worker asks Linux
to send it SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``); where that is not available it
watches its parent's pid instead. SIGTERM is what the worker already handles: its
running trial is marked interrupted (resumed on the next run) and it exits. Workers started by hand
(``facesearch worker``) carry no such variable and are tied to nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

SUPERVISOR_ENV = "FACESEARCH_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1
WATCH = 1.0          # seconds between looks at the parent pid (the fallback)


def tether_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of a worker this process starts and supervises."""
    return {**env, SUPERVISOR_ENV: str(os.getpid())}


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
