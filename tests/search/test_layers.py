"""The house draws as floors and every import arrow between rooms points down (lazy imports included);
facenet knows nothing of search; importing any module changes nothing outside it (Optuna's logging)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLOORS = [   # lowest first: a room may import only rooms on lower floors
    {"facenet"},
    {"search.interrupts"},      # stop signals held until a storage write ends (the journal's, the workers')
    {"search.record", "search.builtin", "search.journal", "search.logline", "search.track",
     "search.proxy"},
    {"search.trials", "search.spec"},
    {"search.storage"},
    {"search.cost"},
    {"search.run", "search.view"},
    {"search.finish"},
    {"search.plan"},            # runs phases and finishes them (finish.retrain); the quickstart is a plan
    {"search.cli", "search", "search.api"},   # the command line and the package's own API on top
]


def room(module: str) -> str:
    """``facenet`` (one room for this test: it never imports search), or ``search.<room or module>``."""
    parts = module.split(".")
    return parts[0] if parts[0] != "search" or len(parts) == 1 else f"search.{parts[1]}"


def imports(path: Path, module: str) -> set[str]:
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            if node.module:
                out.add(".".join([*base, node.module]))
            else:
                out.update(".".join([*base, a.name]) for a in node.names)
    return out


def arrows() -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for package in ("facenet", "search"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            for target in imports(path, module):
                a, b = room(module), room(target)
                if target.split(".")[0] in ("facenet", "search") and a != b:
                    found.setdefault((a, b), set()).add(f"{module} -> {target}")
    return found


def test_every_arrow_between_rooms_points_down():
    floor = {r: i for i, rooms in enumerate(FLOORS) for r in rooms}
    found = arrows()
    assert set().union(*found) <= set(floor), f"a room not on any floor: {set().union(*found) - set(floor)}"
    up = {f"{a} -> {b}": sorted(why) for (a, b), why in found.items() if floor[b] >= floor[a]}
    assert not up, up
    assert not [k for k in found if k[0] == "facenet"], "facenet imports search"


def test_importing_changes_no_logging():
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for package in ("facenet", "search") for p in (ROOT / package).rglob("*.py"))
    code = ("import importlib, optuna, sys\nbefore = optuna.logging.get_verbosity()\n"
            "for m in sys.argv[1:]:\n    importlib.import_module(m)\n"
            "print(before, optuna.logging.get_verbosity())")
    done = subprocess.run([sys.executable, "-c", code, *[m for m in modules if not m.endswith("__main__")]],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.split()
    assert before == after, "importing a module changed Optuna's verbosity"
