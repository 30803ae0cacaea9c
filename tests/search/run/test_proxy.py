"""``facesearch storage serve``: two workers share a study through Optuna's gRPC proxy over localhost, as
workers on nodes without a database server would."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter

from optuna.trial import TrialState

from tests.search.cli.test_cli_errors import cli, one_line_error
from tests.search.run.test_workers import trials_of, write_spec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_share_a_grpc_proxy(synth_data, tmp_path):
    journal = tmp_path / "served.journal"
    port = free_port()
    env = dict(os.environ, FACESEARCH_RUNS=str(tmp_path / "runs"), OMP_NUM_THREADS="1")
    server = subprocess.Popen([sys.executable, "-m", "search.cli", "storage", "serve", "--storage", str(journal),
                               "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = server.stdout.readline()   # the server says where it listens once it is about to serve
        assert f"grpc://127.0.0.1:{port}" in first, first
        url = f"grpc://127.0.0.1:{port}"
        spec_path = write_spec(tmp_path / "s.yaml", synth_data, "proxied", n_trials=4, epochs=1)
        workers = [subprocess.Popen([sys.executable, "-m", "search.cli", "worker", str(spec_path), "--storage", url,
                                     "--worker-id", str(i)], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True) for i in range(2)]
        outs = [w.communicate(timeout=600)[0] for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outs
        assert all("started: study proxied" in out for out in outs)
        trials = trials_of(url, "proxied")
        numbers = Counter(t.number for t in trials)
        assert all(n == 1 for n in numbers.values()), numbers
        assert sorted(numbers) == list(range(len(trials)))
        assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
        assert not [t for t in trials if t.state == TrialState.RUNNING]
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=60)
    assert server.returncode == 0, out
    assert journal.exists(), "the study lives in the served journal file"
    # the journal itself holds what the proxy served (read without the proxy once it stopped)
    assert sum(t.state == TrialState.COMPLETE for t in trials_of(str(journal), "proxied")) == 4


def test_an_unreachable_proxy_is_one_line(monkeypatch):
    import functools

    from search import proxy

    # a closed port never answers: the real wait, a second rather than the default 10 (the line is the same)
    monkeypatch.setattr(proxy, "connect", functools.partial(proxy.connect, wait=1.0))
    one_line_error(cli("studies", "--storage", f"grpc://127.0.0.1:{free_port()}"),
                   "cannot reach storage grpc://127.0.0.1", "facesearch storage serve")
    one_line_error(cli("studies", "--storage", "grpc://nohostport"), "grpc://HOST:PORT")
