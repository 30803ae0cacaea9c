"""The studies and plans shipped with facesearch: their names, their files, and a CLI argument that names one.

In a checkout (or an editable install) they are the top-level ``studies/*.yaml`` users see; a wheel carries
the same files as ``search/studies/*.yaml`` (pyproject.toml maps the folder into the package).
"""
from __future__ import annotations

from pathlib import Path

from facenet.errors import UserError

_PACKAGE = Path(__file__).resolve().parent


class UnknownStudy(UserError, FileNotFoundError):
    """A study argument that is neither a spec file nor the name of a built-in study."""


def builtin_dir() -> Path:
    installed = _PACKAGE / "studies"            # a wheel (or any non-editable install)
    return installed if installed.is_dir() else _PACKAGE.parent / "studies"   # a source checkout


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yaml"))


def builtin_path(name: str) -> Path:
    path = builtin_dir() / f"{name}.yaml"
    if not path.is_file():
        raise UnknownStudy(f"no built-in study named {name!r}; built-in studies: "
                           f"{', '.join(builtin_names())}")
    return path


def resolve_study(arg: str | Path) -> Path:
    """A study spec file, or the file of the built-in study of that name (a file of that name wins)."""
    return _file_or_shipped(arg, builtin_dir(), f"{arg}: no such study spec file nor built-in study; built-in "
                                                 f"studies: {', '.join(builtin_names())}")


def _file_or_shipped(arg: str | Path, folder: Path, missing: str) -> Path:
    """``arg`` when it is a file, else ``folder/ARG.yaml`` for a bare name; ``UnknownStudy(missing)`` otherwise."""
    path = Path(arg)
    if path.is_file():
        return path
    shipped = folder / f"{arg}.yaml"
    if path.suffix not in (".yaml", ".yml") and len(path.parts) == 1 and shipped.is_file():
        return shipped
    raise UnknownStudy(missing)


def plans_dir() -> Path:
    """The shipped plans (``studies/plans/*.yaml``): phases of built-in studies under one budget."""
    return builtin_dir() / "plans"


def plan_names() -> list[str]:
    return sorted(p.stem for p in plans_dir().glob("*.yaml"))


def resolve_plan(arg: str | Path) -> Path:
    """A plan file, or the shipped plan of that name (a file of that name wins)."""
    return _file_or_shipped(arg, plans_dir(), f"{arg}: no such plan file nor shipped plan; shipped plans: "
                                              f"{', '.join(plan_names())}")
