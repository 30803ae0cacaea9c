"""Optional dependencies, installed by the distribution's extras: what is missing, and the one-line error
naming the extra to install."""
from __future__ import annotations

import importlib

from .errors import MissingExtra


def missing_modules(*modules: str) -> list[str]:
    """The modules that cannot be imported (imported, not looked up: a broken install counts as missing)."""
    gone = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            gone.append(name)
    return gone


def require_extra(extra: str, purpose: str, *modules: str) -> None:
    """Raise MissingExtra unless every module imports, e.g. "ONNX export needs the export extra ..."."""
    gone = missing_modules(*modules)
    if gone:
        raise MissingExtra(f"{purpose} needs the {extra} extra ({', '.join(gone)} not installed): "
                           f"pip install 'facesearch[{extra}]'")
