"""The typer app and the options several commands share."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

app = typer.Typer(help="Tune face-embedding training with Optuna studies. Add --debug anywhere for tracebacks.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Data sets: synthesise faces, check a data set before a study.", no_args_is_help=True)
study_app = typer.Typer(help="Run and inspect Optuna studies.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(study_app, name="study")

Storage = Annotated[Optional[str], typer.Option(
    envvar="FACESEARCH_STORAGE", show_envvar=True,
    help="Optuna storage: a journal file path (default runs/facesearch.journal), sqlite:///FILE, "
         "postgresql://..., mysql://... or grpc://HOST:PORT (facesearch storage serve)")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Timeout = Annotated[Optional[str], typer.Option(help="No new trial starts after this long: 90m, 2h, 1h30m or seconds.")]
LogFormat = Annotated[str, typer.Option(
    "--log-format", envvar="FACESEARCH_LOG_FORMAT", help="Log lines without a terminal: text (ISO date and time, "
    "then the message) or json (one object per line, for log collectors).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (stable keys, see the README) instead of a table.")]


def echo(msg: str) -> None:
    typer.echo(msg)


def use_log_format(fmt: str) -> None:
    """Check ``--log-format`` and hand it to this process's log lines and the workers it starts."""
    import os

    from facenet.errors import UserError

    from ..logline import LOG_FORMAT_ENV, LOG_FORMATS

    if fmt not in LOG_FORMATS:
        raise UserError(f"--log-format {fmt!r}: use one of {', '.join(LOG_FORMATS)}")
    os.environ[LOG_FORMAT_ENV] = fmt


def seconds(duration: str | None) -> float | None:
    """``--timeout`` as the YAML writes it (``2h``, ``90m``, ``3600``)."""
    from ..spec import parse_duration

    return None if duration is None else parse_duration(duration)


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version

        typer.echo(f"facesearch {version('facesearch')}")
        raise typer.Exit()


@app.callback()
def _root(show_version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                     help="Print the version and exit.")] = False) -> None:
    pass   # the app's help says what facesearch is; this callback only adds --version
