"""Where studies live: an embedded journal file by default, or any Optuna storage URL.

The journal file is safe for several processes on one machine (SQLite is not). Database
URLs (PostgreSQL, MySQL) are for many machines; they get Optuna's heartbeat so a trial
whose worker vanished is failed and queued again by the survivors.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import warnings

import optuna

from facenet.errors import UserError

from .trials import RetryStaleTrial

# heartbeats and the retry callback are marked experimental but are the documented way to
# survive dead workers on a database; the warning would print once per worker process
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

DEFAULT_STORAGE = "runs/facesearch.journal"
# seconds between a running trial's heartbeats, and of silence after which it is stale (failed
# and retried); FACESEARCH_HEARTBEAT=INTERVAL:GRACE overrides them (the tests use seconds)
HEARTBEAT_INTERVAL, GRACE_PERIOD = (int(v) for v in os.environ.get("FACESEARCH_HEARTBEAT", "20:60").split(":"))
MAX_RETRY = 3


class StorageError(UserError):
    """A storage that cannot be opened, or a study that is not in it."""


def storage_url(url: str | None = None) -> str:
    return url or os.environ.get("FACESEARCH_STORAGE") or DEFAULT_STORAGE


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def is_database(url: str) -> bool:
    return "://" in url


def open_storage(url: str | None = None) -> optuna.storages.BaseStorage:
    url = storage_url(url)
    if is_database(url):
        return _open_rdb(url)
    path = Path(url.removeprefix("journal:"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    except OSError as e:
        raise StorageError(f"cannot open journal storage {path}: {e.strerror or e}; choose a writable path") from None


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
    heartbeat = {} if scheme == "sqlite" else {
        "heartbeat_interval": HEARTBEAT_INTERVAL, "grace_period": GRACE_PERIOD,
        "heartbeat_stale_trial_callback": RetryStaleTrial(max_retry=MAX_RETRY),
    }
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **heartbeat)
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
