"""The studies shipped with facesearch (``facesearch studies --builtin``)."""
from __future__ import annotations

from rich.table import Table


def builtin_json() -> list[dict]:
    """The studies shipped with facesearch: name, file and what each asks."""
    import yaml

    from ..builtin import builtin_names, builtin_path

    out = []
    for name in builtin_names():
        path = builtin_path(name)
        description = (yaml.safe_load(path.read_text()) or {}).get("description") or ""
        out.append({"name": name, "path": str(path), "description": " ".join(description.split())})
    return out


def builtin_table() -> Table:
    table = Table(title="built-in studies (facesearch study run NAME)", title_justify="left")
    for col in ("name", "what it asks"):
        table.add_column(col, overflow="fold")
    for s in builtin_json():
        table.add_row(s["name"], s["description"])
    return table
