"""One self-contained report page: sections of HTML and figures, offline.

plotly.js is inlined once, in the page's first figure; every figure is also written on its own
as ``figures/NAME.html`` (all sharing one ``figures/plotly.min.js``) and as ``figures/NAME.png``.
A section that cannot be drawn raises ``Skip``; its message replaces it on the page.
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Callable

from .figures import Fig, save_png


class Skip(Exception):
    """A section this study cannot show; the message replaces it on the page."""


Part = Fig | str           # a figure, or an HTML fragment

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.2em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.note{color:#666;font-style:italic}
.wide{overflow-x:auto}nav a{margin-right:1em}h2{border-bottom:1px solid #ddd;margin-top:2em}"""


def slug(text: str) -> str:
    """A name safe in a file name and an HTML id."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


class Page:
    def __init__(self, out: Path):
        self.out = Path(out)
        self.figures = self.out / "figures"
        self.figures.mkdir(parents=True, exist_ok=True)
        self.body: list[str] = []
        self.names: list[str] = []          # figures written, in order
        self._inlined = False

    def add(self, part: Part) -> None:
        if isinstance(part, str):
            self.body.append(part)
            return
        if part.name in self.names:
            raise ValueError(f"figure name {part.name!r} used twice on one page")
        part.figure.write_html(self.figures / f"{part.name}.html", include_plotlyjs="directory")
        save_png(part, self.figures / f"{part.name}.png")
        self.body.append(part.figure.to_html(full_html=False, include_plotlyjs=not self._inlined,
                                             div_id=f"fig-{part.name}"))
        png = f"figures/{part.name}.png"
        self.body.append(f'<p class="static">PNG: <a href="{png}">{png}</a></p>')
        self._inlined = True
        self.names.append(part.name)

    def section(self, key: str, title: str, build: Callable[[], list[Part]], level: int = 2) -> None:
        self.body.append(f'<h{level} id="{key}">{html.escape(title)}</h{level}>')
        try:
            parts = build()
        except Skip as e:
            self.body.append(f'<p class="note">{html.escape(str(e))}</p>')
            return
        for part in parts:
            self.add(part)

    def write(self, filename: str, title: str) -> Path:
        page = self.out / filename
        tmp = page.with_suffix(".tmp")
        head = f'<meta charset="utf-8"><title>{html.escape(title)}</title><style>{CSS}</style>'
        tmp.write_text(f"<!DOCTYPE html>\n<html><head>{head}</head><body>\n" + "\n".join(self.body)
                       + "\n</body></html>\n")
        tmp.replace(page)   # a reader never sees half a page
        return page
