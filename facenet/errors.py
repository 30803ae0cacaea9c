"""Errors that are the user's to fix: the CLI prints their one-line message and exits 2.

Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(name: object, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or nothing: the hint of every unknown-name error."""
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class UserError(Exception):
    """Base of every error whose message names the input and says how to fix it."""


class DataError(UserError, ValueError):
    """A data folder, image or pair list that cannot be used."""


def unreadable(path: object, e: OSError) -> DataError:
    """A file-system error met reading a data set (a symlink loop, no permission, a vanished file) as one line
    naming the path; data sets are only read, so the fix is the user's."""
    return DataError(f"{path}: cannot read it ({e.strerror or e}); fix or remove it")


class ConfigError(UserError, ValueError):
    """A config that cannot run (unknown name, wrong device, a loss needing more images per identity...)."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be written, read, or does not fit the model."""


class NonFiniteLoss(UserError, FloatingPointError):
    """The training loss became NaN or infinite."""


class MissingExtra(UserError, ImportError):
    """An optional part used without the pip extra that installs it (``pip install 'facesearch[NAME]'``)."""
