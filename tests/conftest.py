"""Shared fixtures: a small synthetic face set, a tiny training config, and a real PostgreSQL server."""
from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from facenet.config import TrainConfig

# For the worker processes the tests start: the supervisor leaves a set OMP_NUM_THREADS alone, and
# two workers with two OpenMP threads each on 2 cores spin at each other's barriers (epochs 100x slower).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Decoded-image caches that a test does not place itself go to a throwaway folder, never to the
# user's ~/.cache (worker processes inherit this); tests that need other settings set their own.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="facesearch-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)
for _name in ("FACESEARCH_CACHE", "FACESEARCH_CACHE_BUDGET"):
    os.environ.pop(_name, None)
# A suite started in the background (``pytest &`` in a script) inherits SIGINT ignored, and so would every
# process it starts: the Ctrl-C tests would then test nothing. Children get Python's default back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    """48 synthetic identities x 8 images at 40 px in the course layout (built once per session)."""
    from facenet.data.synth import synthesize

    root = tmp_path_factory.mktemp("synth") / "data"
    synthesize(root, identities=48, images_per_identity=8, size=40, seed=0, val_pairs=200, test_pairs=120)
    return root


@pytest.fixture
def tiny_config(synth_data, tmp_path) -> TrainConfig:
    """A narrow ResNet at 32 px: one epoch takes about a second on 2 CPU cores."""
    return TrainConfig(train_path=str(synth_data / "train1"), val_path=str(synth_data / "val"), resolution=32,
                       model="resnet_w", width=0.125, n_out=32, batch_size=8, n_per_class=2, epochs=2, workers=0,
                       augment="none", run_dir=str(tmp_path / "run"), cache_dir=str(tmp_path.parent / "cache"),
                       device="cpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A real PostgreSQL server in a temporary folder on a free port; stopped after the session.

    initdb refuses to run as root, so the server runs as the unprivileged ``postgres`` user
    when the tests run as root (as CI does).
    """
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found; .ci/run installs Debian's postgresql")
    folder = Path(tempfile.mkdtemp(prefix="facesearch-pg-"))
    data = folder / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "facesearch", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(folder / "log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        url = f"postgresql://facesearch@127.0.0.1:{port}/postgres"
        deadline = time.time() + 30
        import psycopg

        while True:
            try:
                psycopg.connect(url.replace("postgresql://", "postgresql://", 1), connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        yield url
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
