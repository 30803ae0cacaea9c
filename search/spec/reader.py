"""Reading a spec file: the YAML loader, ``${VAR}`` expansion, and type checks that fail with the
file and the field path (``studies/x.yaml: space.lr.low: must be > 0 when log: true``)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn

import yaml

from facenet.config import FIELD_TYPES, coerce, yaml_problem
from facenet.errors import ConfigError, did_you_mean
from facenet.names import check_name

from .schema import DATA_FIELDS, SpecError

SCALARS = (str, int, float, bool)


KINDS: dict[str, Callable[[Any], bool]] = {    # what a field expects -> its check (YAML booleans are not numbers)
    "an integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "a number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "a string": lambda v: isinstance(v, str),
    "true or false": lambda v: isinstance(v, bool),
    "a list": lambda v: isinstance(v, list),
}


def kind_of(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a mapping", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# ------------------------------------------------------------------ YAML
class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-4`` as a float (YAML 1.1 insists on a dot) and refuses duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, SCALARS):
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))



def read_yaml(path: str | Path) -> Any:
    """The YAML document in ``path``; a missing or malformed file is a one-line ``SpecError``."""
    path = Path(path)
    if not path.is_file():
        raise SpecError.at(path, "", "study spec not found")
    try:
        return yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as e:
        raise SpecError.at(path, "", yaml_problem(e)) from None
    except UnicodeDecodeError:
        raise SpecError.at(path, "", "not a UTF-8 text file") from None


class Reader:
    """Type checks that fail with the source file and the field path."""

    def __init__(self, source: str | Path | None):
        self.source = source

    def fail(self, path: str, message: str) -> NoReturn:
        raise SpecError.at(self.source, path, message)

    def mapping(self, value: Any, path: str, known: Iterable[str] | None = None,
                required: Iterable[str] = ()) -> dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {kind_of(value)}")
        if known is not None:
            known = list(known)
            for key in value:
                if key not in known:
                    self.fail(path, f"unknown key {key!r}{did_you_mean(key, known)}")
        for key in required:
            if key not in value:
                self.fail(join_path(path, key), "required")
        return value

    def expect(self, value: Any, path: str, kind: str) -> Any:
        if not KINDS[kind](value):
            self.fail(path, f"expected {kind}, got {kind_of(value)} {value!r}")
        return value

    def int_at_least(self, value: Any, path: str, minimum: int = 1) -> int:
        self.expect(value, path, "an integer")
        if value < minimum:
            self.fail(path, f"must be >= {minimum}, got {value}")
        return value

    def field_name(self, key: Any, path: str) -> str:
        """``key`` must be a TrainConfig field other than the data paths."""
        if key in DATA_FIELDS.values():
            self.fail(path, f"{key!r}: data paths come only via data: ({', '.join(DATA_FIELDS)})")
        if key not in FIELD_TYPES:
            self.fail(path, f"unknown TrainConfig field {key!r}{did_you_mean(key, FIELD_TYPES)}")
        return key

    def field_value(self, key: str, value: Any, path: str) -> Any:
        """A scalar that fits field ``key``, coerced; registry names must be known."""
        if not isinstance(value, SCALARS):
            self.fail(path, f"expected a single value, got {kind_of(value)}")
        try:
            coerced = coerce(key, value)
        except ConfigError as e:
            self.fail(path, str(e))
        try:
            check_name(key, coerced)
        except ConfigError as e:   # UnknownName lists the known names
            self.fail(path, str(e))
        return coerced


def join_path(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(r: Reader, text: str, path: str) -> str:
    """``${VAR}`` and ``${VAR:-default}`` (the default also when VAR is empty) from the environment."""
    def sub(m: re.Match) -> str:
        value, default = os.environ.get(m[1]), m[2]
        if default is not None:
            return value or default
        if value is None:
            r.fail(path, f"environment variable {m[1]} is not set; set it or write ${{{m[1]}:-default}}")
        return value

    return _VAR.sub(sub, text)

