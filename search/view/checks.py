"""Tables of the checks made before a study: parameter counts against the cap, and a data set's check."""
from __future__ import annotations

from rich.table import Table


def params_table(rows: list[dict], cap: int) -> Table:
    """``facenet.models.param_table`` rows against the cap."""
    table = Table(title=f"parameters by the cap rule (cap {cap:,})")
    keys = [k for k in rows[0] if k not in ("params", "fits")]
    for k in keys:
        table.add_column(k)
    table.add_column("params", justify="right")
    table.add_column("fits")
    for r in rows:
        table.add_row(*[str(r[k]) if r[k] is not None else "" for k in keys], f"{r['params']:,}",
                      "[green]yes[/]" if r["fits"] else "[red]no[/]")
    return table


def data_check_table(rows: list[tuple[str, str, str]], root) -> Table:
    """``facenet.data.datacheck`` rows: one line per set and check."""
    table = Table("set", "check", "value", title=f"data check of {root}")
    for row in rows:
        table.add_row(*row)
    return table
