"""The typer app and the options several commands share."""
from __future__ import annotations

import typer

app = typer.Typer(help="Tune face-embedding training with Optuna studies. Add --debug anywhere for tracebacks.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Data sets: synthesise faces.", no_args_is_help=True)
study_app = typer.Typer(help="Run and inspect Optuna studies.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(study_app, name="study")

STORAGE_HELP = "Optuna storage: a journal file path (default runs/facesearch.journal, or $FACESEARCH_STORAGE), " \
               "sqlite:///FILE, postgresql://... or mysql://..."
DEVICE_HELP = "auto, cpu, cuda or cuda:N."


def echo(msg: str) -> None:
    typer.echo(msg)
