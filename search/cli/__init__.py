"""The ``facesearch`` command line: each command parses its options and calls one function.

Commands live by room: ``data`` (synthetic faces), ``train`` (train, score, params), ``study`` (run,
worker, studies, status, best), ``cost`` (calibrate), ``plan`` (price, run, status), ``finish`` (retrain,
export, quickstart), ``view`` (report, dashboard).
User errors (bad paths, bad YAML, unknown names, unreachable storage) end in one line on stderr and
exit status 2; ``--debug`` anywhere on the command line shows the traceback instead.
"""
from __future__ import annotations

import sys

import typer

from .common import app
# each module registers its commands on app; this order is the order of --help
from . import data, train, study, cost, plan, finish, view, cluster  # noqa: F401, I001


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv.remove("--debug")
    sys.argv[:] = plan.legacy_plan_args(sys.argv)
    try:
        app()
    except Exception as e:
        from facenet.errors import UserError

        if debug or not isinstance(e, UserError):
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
