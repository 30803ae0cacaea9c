"""Where studies live: an embedded journal file by default, or any Optuna storage URL.

The journal file is safe for several processes on one machine (SQLite is not). Database
URLs (PostgreSQL, MySQL) are for many machines; they get Optuna's heartbeat so a trial
whose worker vanished is failed and queued again by the survivors. ``grpc://HOST:PORT`` reaches a
storage that ``facesearch storage serve`` holds for many machines (no database server needed).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import warnings

import optuna

from facenet.errors import UserError

from .journal import CheckedJournal
from .run.recovery import MAX_RETRY, RetryStaleTrial

# heartbeats and the retry callback are marked experimental but are the documented way to
# survive dead workers on a database; the warning would print once per worker process
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

DEFAULT_STORAGE = "runs/facesearch.journal"
HEARTBEAT_ENV, HEARTBEAT_DEFAULT = "FACESEARCH_HEARTBEAT", "20:60"


class StorageError(UserError):
    """A storage that cannot be opened, or a study that is not in it."""


def heartbeat() -> tuple[int, int]:
    """Seconds between a running trial's heartbeats, and of silence after which it is stale (failed and
    retried); ``FACESEARCH_HEARTBEAT=INTERVAL:GRACE`` overrides them (the tests use seconds). Read when a
    database storage opens, so a bad value is one line there, not a traceback at import."""
    raw = os.environ.get(HEARTBEAT_ENV, "").strip() or HEARTBEAT_DEFAULT
    parts = raw.split(":")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        interval, grace = (int(p) for p in parts)
        if 0 < interval < grace:
            return interval, grace
    raise StorageError(f"{HEARTBEAT_ENV}={raw!r}: expected INTERVAL:GRACE in whole seconds with "
                       f"0 < INTERVAL < GRACE (default {HEARTBEAT_DEFAULT}); fix or unset it")


def storage_url(url: str | None = None) -> str:
    return url or os.environ.get("FACESEARCH_STORAGE") or DEFAULT_STORAGE


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def is_database(url: str) -> bool:
    return "://" in url


def open_storage(url: str | None = None, create: bool = True) -> optuna.storages.BaseStorage:
    """The storage; ``create=False`` (the read-only commands) refuses a journal or SQLite file that is not
    there instead of creating it and its folder."""
    url = storage_url(url)
    if url.startswith("grpc://"):
        return open_grpc(url)
    if not create:
        must_exist(url)
    if is_database(url):
        return _open_rdb(url)
    path = Path(url.removeprefix("journal:"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(CheckedJournal(str(path)))
    except OSError as e:
        raise StorageError(f"cannot open journal storage {path}: {e.strerror or e}; choose a writable path") from None


def open_grpc(url: str) -> optuna.storages.BaseStorage:
    """``grpc://HOST:PORT``: the storage a ``facesearch storage serve`` process holds for many nodes."""
    from .run.proxy import connect   # the grpc extra: imported only for a grpc:// URL

    return connect(url)


def must_exist(url: str) -> None:
    """A file storage that is not there: one line (reading must not create it, nor its folder)."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
    elif is_database(url):
        return
    else:
        path = Path(url.removeprefix("journal:"))
    if not path.is_file():
        raise StorageError(f"no storage at {path} ({'a folder' if path.is_dir() else 'no such file'}); run a "
                           f"study first (facesearch study run SPEC) or give the right --storage")


DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}   # what the db extra installs


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` and ``mysql://`` name the drivers facesearch installs (SQLAlchemy defaults to others)."""
    scheme, rest = url.split("://", 1)
    return f"{DRIVERS.get(scheme, scheme)}://{rest}"


def _open_rdb(url: str) -> optuna.storages.RDBStorage:
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    if scheme not in ("sqlite", "postgresql", "mysql"):
        raise StorageError(f"storage URL {redact(url)!r}: unknown scheme {scheme!r}; use a journal file path, "
                           f"sqlite:///FILE, postgresql://USER:PASS@HOST/DB or mysql://USER:PASS@HOST/DB")
    url = sqlalchemy_url(url)
    beats = {} if scheme == "sqlite" else {
        "heartbeat_interval": (beat := heartbeat())[0], "grace_period": beat[1],
        "heartbeat_stale_trial_callback": RetryStaleTrial(max_retry=MAX_RETRY),
    }
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **beats)
    except ImportError as e:
        raise StorageError(f"storage {redact(url)}: database driver missing ({e.name}); "
                           f"install it with: pip install 'facesearch[db]'") from None
    except Exception as e:   # sqlalchemy's OperationalError, ArgumentError, ...
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise StorageError(f"cannot reach storage {redact(url)}: {reason}; "
                           f"check the URL and that the server is up") from None


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    """The studies of specs (not the calibration table facesearch keeps beside them)."""
    return sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
                  if not s.study_name.startswith("facesearch:"))


def load_study(name: str, storage: optuna.storages.BaseStorage, url: str | None = None) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = study_names(storage)
        listing = ", ".join(known) if known else "none yet"
        raise StorageError(f"no study named {name!r} in {redact(storage_url(url))}; studies there: {listing}") from None


def home(url: str | None = None) -> Path:
    """The folder a storage's files go in: beside a journal file, or runs/ for a database."""
    url = storage_url(url)
    return Path("runs") if is_database(url) else Path(url.removeprefix("journal:")).parent


def runs_root(url: str | None = None) -> Path:
    """Trial run folders: $FACESEARCH_RUNS (a shared file system for many machines), else the storage's home."""
    return Path(os.environ["FACESEARCH_RUNS"]) if os.environ.get("FACESEARCH_RUNS") else home(url)


def artifact_dir(url: str | None = None) -> Path:
    """Artifacts (retrained models, reports) for optuna-dashboard."""
    return home(url) / "artifacts"
