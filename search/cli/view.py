"""``facesearch report`` and ``dashboard``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import Storage, app, echo


@app.command()
def report(
    name: Optional[str] = typer.Argument(None, help="Study name (or --all)."),
    out: Path = typer.Option(..., help="Folder for the page, its figures (HTML and PNG) and tables."),
    storage: Storage = None,
    every_study: bool = typer.Option(False, "--all", help="One page over every study of the storage: the "
                                     "plan's questions answered, the experiment record as CSV and Markdown."),
) -> None:
    """HTML report of a study (or --all): intervals, within-noise trials, Optuna's figures, EER by choice."""
    from ..storage import StorageError, load_study, open_storage

    if every_study == (name is not None):
        raise StorageError("give a study name or --all (not both); list the studies with: facesearch studies")
    store = open_storage(storage, create=False)
    if every_study:
        from ..plan.report import report_sections
        from ..view.analysis import write_analysis

        path = write_analysis(store, out, storage, report_sections(store))
        echo(f"wrote {path} (figures, experiments.csv / experiments.md beside it)")
        return
    from ..view.report import write_report

    path = write_report(load_study(name, store, storage), out)
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

    open_storage(storage, create=False)   # a clear error now rather than inside the dashboard
    echo(f"dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    code = serve_dashboard(storage_url(storage), host, port, artifact_dir(storage))
    if code > 128:   # stopped by SIGTERM or SIGHUP (passed on to the dashboard): the shell's status for it
        raise typer.Exit(code)
