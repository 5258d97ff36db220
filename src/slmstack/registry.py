"""Namespaced, versioned registries (``"slmstack.TextClassifier.v1"``).

A saved skill folder records the registered name of its class in ``config.json``, so
:func:`slmstack.load` can rebuild any skill without an ``if/elif`` chain.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

from slmstack.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → object mapping with helpful errors for unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``."""

        def _add(obj: T) -> T:
            self._items[name] = obj
            return obj

        return _add

    def get(self, name: str) -> T:
        """Return the object registered as ``name``."""
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(self._items)) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r}.{hint} Known: {known}.") from None

    def names(self) -> list[str]:
        """All registered names."""
        return sorted(self._items)


skills: Registry[type] = Registry("skill")
