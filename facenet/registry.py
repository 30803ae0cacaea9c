"""A tiny name -> factory registry, in the style of timm's ``register_model``.

Every pluggable piece of a run (model, loss, optimizer, scheduler, augmentation)
lives in one ``Registry`` so a study can search over it by name and an unknown name
fails with the list of known ones.
"""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from .errors import ConfigError, did_you_mean

F = TypeVar("F", bound=Callable)


class UnknownName(ConfigError, KeyError):
    """An unknown registry name; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class Registry(Generic[F]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, F] = {}

    def register(self, name: str | None = None) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            key = name or fn.__name__
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            self._items[key] = fn
            return fn

        return deco

    def get(self, name: str) -> F:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownName(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        return f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}; known: {', '.join(self.names())}"

    def create(self, name: str, *args, **kwargs):
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
