"""``facesearch storage serve``: one process holds a storage (a journal file on that node's own disk, or a
database) and serves it over Optuna's gRPC proxy; workers on any node reach it as ``grpc://HOST:PORT``.

For clusters with no database server, where a journal file on NFS is unsafe for many writers. The proxy
has no heartbeat: a worker that dies without a signal (SIGKILL, a node lost) is noticed only by a later
worker on the same host, so a database is still the better choice where there is one.
"""
from __future__ import annotations

import re
from typing import Callable

import optuna

from facenet.errors import UserError

GRPC_URL = re.compile(r"grpc://(?P<host>[^:/]+):(?P<port>\d+)/?$")
INSTALL = "install it with: pip install 'facesearch[grpc]'"


class ProxyError(UserError):
    """A grpc:// URL that is malformed, or whose proxy cannot be reached."""


def parse(url: str) -> tuple[str, int]:
    m = GRPC_URL.match(url)
    if not m:
        raise ProxyError(f"storage URL {url!r}: write grpc://HOST:PORT (the host and port "
                         f"'facesearch storage serve' listens on)")
    return m["host"], int(m["port"])


def connect(url: str, wait: float = 10.0) -> optuna.storages.BaseStorage:
    """The proxy's storage, once it answers (one line naming the URL when it does not)."""
    host, port = parse(url)
    try:
        import grpc
    except ImportError:
        raise ProxyError(f"storage {url}: the gRPC client is missing; {INSTALL}") from None
    try:
        grpc.channel_ready_future(grpc.insecure_channel(f"{host}:{port}")).result(timeout=wait)
    except grpc.FutureTimeoutError:
        raise ProxyError(f"cannot reach storage {url} within {wait:.0f}s; start it on {host} with: "
                         f"facesearch storage serve --port {port}, or check the host and port") from None
    return optuna.storages.GrpcStorageProxy(host=host, port=port)


def serve(storage: optuna.storages.BaseStorage, host: str, port: int,
          log: Callable[[str], None] = print) -> None:
    """Serve ``storage`` until SIGTERM / Ctrl-C (Optuna's server; it blocks)."""
    try:
        import grpc  # noqa: F401
    except ImportError:
        raise ProxyError(f"storage serve: gRPC is missing; {INSTALL}") from None
    from optuna.storages import run_grpc_proxy_server

    import signal

    def stop(signum, _frame):   # scancel, kill: a clean exit (status 0), as after Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    log(f"serving the storage on {host}:{port}; workers use --storage grpc://{host_for_workers(host)}:{port}")
    try:
        run_grpc_proxy_server(storage, host=host, port=port)
    except RuntimeError as e:   # grpc's "Failed to bind to address"
        raise ProxyError(f"storage serve: cannot listen on {host}:{port} ({e}); choose another --port") from None
    except KeyboardInterrupt:
        log("storage serve: stopped")


def host_for_workers(host: str) -> str:
    """What other nodes call this one: its host name when the server listens on every interface."""
    import socket

    return socket.gethostname() if host in ("0.0.0.0", "::", "") else host
