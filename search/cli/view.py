"""``facesearch report`` and ``dashboard``."""
from __future__ import annotations

from pathlib import Path

import typer

from .common import Storage, app, echo


@app.command()
def report(
    name: str = typer.Argument(..., help="Study name."),
    out: Path = typer.Option(..., help="Folder for report.html, figures and the experiment tables."),
    storage: Storage = None,
) -> None:
    """HTML report: Optuna's figures, EER by architecture and loss, ROC/DET of the best run, trial tables."""
    from ..storage import load_study, open_storage
    from ..view.report import write_report

    path = write_report(load_study(name, open_storage(storage), storage), out)
    echo(f"wrote {path} (figures and trials.csv / trials.md beside it)")


@app.command()
def dashboard(
    storage: Storage = None,
    host: str = typer.Option("127.0.0.1", help="Address to bind; localhost unless you mean to share it."),
    port: int = typer.Option(8080, help="Port."),
) -> None:
    """Serve optuna-dashboard over the study storage (with the artifact folder)."""
    from ..storage import artifact_dir, open_storage, storage_url
    from ..view.dashboard import serve_dashboard

    open_storage(storage)   # a clear error now rather than inside the dashboard
    echo(f"dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    serve_dashboard(storage_url(storage), host, port, artifact_dir(storage))
