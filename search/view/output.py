"""One output convention for every read-only command: ``--format table|json|csv`` (``--json`` = json).

- ``table``: rich tables on a terminal; piped (a log file, CI), the same tables without box characters or
  colour, 100 columns wide when they fit there, else each row on one line of plain text;
- ``json``: the command's record, indented, stable keys (NaN and infinities as null), nothing else on stdout;
- ``csv``: one header line, then one line per row (nested values as JSON), for spreadsheets and pandas.

Commands hand ``emit`` their JSON record, a function drawing the table, and (for CSV) their rows when the
record is not already a list of rows.
"""
from __future__ import annotations

import csv
import io
import json
import math
import sys
from typing import Any, Callable, Iterable

FORMATS = ("table", "json", "csv")
PIPED_WIDTH = 100     # a piped table this wide or narrower keeps its layout; wider ones print a row per line
LONGEST_LINE = 400    # a row per line, up to this width (then rich folds the widest cells)


class FormatError(ValueError):
    pass


def output_format(fmt: str, as_json: bool = False) -> str:
    """``--format`` with ``--json`` as its short form."""
    fmt = "json" if as_json else (fmt or "table").lower()
    if fmt not in FORMATS:
        from facenet.errors import UserError

        raise UserError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    return fmt


def clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities as null, tuples as lists, paths and other objects as strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def to_json(data: Any) -> str:
    return json.dumps(clean(data), indent=2, allow_nan=False)


def to_csv(rows: Iterable[dict]) -> str:
    rows = [clean(r) for r in rows]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else json.dumps(r[c]) if isinstance(r.get(c), (dict, list))
                         else r[c] for c in columns])
    return out.getvalue()


def print_table(renderable: Any, file=None) -> None:
    """A rich renderable: as is on a terminal; piped, plain (see the module's docstring)."""
    from rich.console import Console

    file = file or sys.stdout
    if file.isatty():
        Console(file=file).print(renderable)
        return
    plain(renderable)
    probe = Console(file=io.StringIO(), width=LONGEST_LINE, no_color=True)
    widest = max((probe.measure(r).maximum for r in _parts(renderable)), default=0)
    width = PIPED_WIDTH if widest <= PIPED_WIDTH else min(widest, LONGEST_LINE)
    text = io.StringIO()
    Console(file=text, width=width, no_color=True, highlight=False, emoji=False).print(renderable)
    file.write("".join(line.rstrip() + "\n" for line in text.getvalue().splitlines()))   # no padding to the width
    file.flush()


def plain(renderable: Any) -> None:
    """No box characters: rich tables (also inside a group) drawn with spaces only."""
    from rich.table import Table

    for part in _parts(renderable):
        if isinstance(part, Table):
            part.box = None
            part.show_edge = False
            part.pad_edge = False


def _parts(renderable: Any) -> list:
    from rich.console import Group

    if isinstance(renderable, Group):
        return [p for r in renderable.renderables for p in _parts(r)]
    return [renderable]


def emit(fmt: str, data: Any, table: Callable[[], Any] | None = None, rows: Iterable[dict] | None = None,
         echo: Callable[[str], None] | None = None) -> None:
    """Print the command's output in ``fmt``; ``table()`` draws it (default: the rows as a plain table)."""
    echo = echo or (lambda text: print(text, flush=True))
    if fmt == "json":
        echo(to_json(data))
    elif fmt == "csv":
        if rows is None:
            if not isinstance(data, list):
                raise FormatError("this command's CSV needs its rows")
            rows = data
        echo(to_csv(rows).rstrip("\n"))
    else:
        print_table(table() if table else rows_table(list(rows if rows is not None else data)))


def rows_table(rows: list[dict], title: str | None = None):
    """A rich table of flat rows (what a command without a table of its own shows)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*("" if r.get(c) is None else f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r[c])
                        for c in columns))
    return table
