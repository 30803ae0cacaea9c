"""optuna-dashboard over a facesearch storage: its command line, and running it in the foreground."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from facenet.errors import UserError

from ..storage import is_database, sqlalchemy_url

# runs the console script's own entry point under this interpreter, so it works without PATH (0.21 has
# no __main__); Ctrl-C may arrive twice (from the terminal and from serve_dashboard): exit once, quietly
LAUNCH = """
import ctypes, ctypes.util, os, signal, sys
from importlib.metadata import entry_points

# die with facesearch dashboard even when it is SIGKILLed (Linux); the parent forwards the other stops
try:
    ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").prctl(1, signal.SIGTERM, 0, 0, 0)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv.pop(1)):
    sys.exit(0)

def stop(*_):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(130)

signal.signal(signal.SIGINT, stop)
(ep,) = entry_points(group="console_scripts", name="optuna-dashboard")
sys.argv[0] = "optuna-dashboard"
sys.exit(ep.load()())
"""
# the drivers facesearch[db] installs (as search.storage uses): SQLAlchemy's defaults, psycopg2 and
# mysqlclient, are not installed
STOP_GRACE = 10   # seconds the dashboard gets to exit after Ctrl-C before it is killed
STOPS = (signal.SIGTERM, signal.SIGHUP)   # a kill, a closed terminal or ssh session: forwarded, as Ctrl-C is


class _Stopped(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def dashboard_command(url: str, host: str, port: int, artifact_dir: Path | None) -> list[str]:
    if not entry_points(group="console_scripts", name="optuna-dashboard"):
        raise UserError("the dashboard needs the dashboard extra (optuna-dashboard not installed): "
                        "pip install 'facesearch[dashboard]'")
    if is_database(url):
        storage = [sqlalchemy_url(url)]
    else:   # a journal file; the hint spares the dashboard guessing from the file's first bytes
        storage = [url.removeprefix("journal:"), "--storage-class", "JournalFileStorage"]
    command = [sys.executable, "-c", LAUNCH, str(os.getpid()), *storage, "--host", host, "--port", str(port)]
    if artifact_dir is not None:
        command += ["--artifact-dir", str(artifact_dir)]
    return command


def serve_dashboard(url: str, host: str = "127.0.0.1", port: int = 8080, artifact_dir: Path | None = None) -> int:
    """Run the dashboard until it exits or Ctrl-C; return its exit status."""
    command = dashboard_command(url, host, port, artifact_dir)
    if artifact_dir is not None:
        Path(artifact_dir).mkdir(parents=True, exist_ok=True)   # the artifact store expects the folder
    process = subprocess.Popen(command)

    def stop(signum, _frame):
        raise _Stopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in STOPS}
    try:
        return process.wait()
    except KeyboardInterrupt:
        return _stop(process, signal.SIGINT)   # a terminal sent it too, a supervisor's kill -INT did not
    except _Stopped as e:
        _stop(process, e.signum)
        return 128 + e.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(process: subprocess.Popen, signum: int) -> int:
    """Pass the stop on to the dashboard and wait for it (killed after ``STOP_GRACE`` seconds)."""
    for sig in (signal.SIGINT, *STOPS):   # one stop: a second signal must not cut the wait short
        signal.signal(sig, signal.SIG_IGN)
    process.send_signal(signum)
    try:
        return process.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the OS picks it); another process may still take it first."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
