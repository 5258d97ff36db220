"""Namespaced, versioned registries (``"slmstack.TextClassifier.v1"``).

A saved skill folder records the registered name of its class in ``config.json``, so
:func:`slmstack.load` can rebuild any skill without an ``if/elif`` chain.

Skills are found two ways:

* the Python entry-point group ``slmstack.skills``: each entry is
  ``"Namespace.Name.vN" = "module:Class"``. slmstack registers its own skills this way
  (``pyproject.toml``), and so does any third-party package; a module is imported only
  when its skill is asked for, so ``import slmstack`` stays light;
* ``@registry.skills.register(name)`` on a class defined at run time (tests, notebooks).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib import metadata
from typing import Any, Generic, TypeVar

from slmstack.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → object mapping, optionally backed by an entry-point group."""

    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.group = entry_point_group
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``."""

        def _add(obj: T) -> T:
            self._items[name] = obj
            return obj

        return _add

    def _entry_points(self) -> dict[str, metadata.EntryPoint]:
        if self.group is None:
            return {}
        return {ep.name: ep for ep in metadata.entry_points(group=self.group)}

    def get(self, name: str) -> T:
        """Return the object registered as ``name`` (importing its module if needed)."""
        if name in self._items:
            return self._items[name]
        entry = self._entry_points().get(name)
        if entry is not None:
            try:
                obj: Any = entry.load()
            except (ImportError, AttributeError) as exc:  # no module, or no such name in it
                raise ConfigError(
                    f"{self.kind} {name!r} is registered by {entry.value!r}, which cannot be "
                    f"imported: {exc}. Reinstall the package that provides it."
                ) from exc
            own = getattr(obj, "skill_name", name)
            if own != name:
                raise ConfigError(
                    f"entry point {name!r} of group {self.group!r} loads {entry.value!r}, "
                    f"whose skill_name is {own!r}; the two must match."
                )
            self._items[name] = obj
            return obj  # type: ignore[no-any-return]
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        known = ", ".join(self.names()) or "none"
        raise ConfigError(f"unknown {self.kind} {name!r}.{hint} Known: {known}.")

    def names(self) -> list[str]:
        """All registered names, including entry points not imported yet."""
        return sorted(set(self._items) | set(self._entry_points()))

    def short_names(self) -> dict[str, str]:
        """``"TextClassifier"`` → ``"slmstack.TextClassifier.v1"`` (newest version wins)."""
        out: dict[str, str] = {}
        for name in self.names():
            parts = name.split(".")
            short = parts[-2] if len(parts) >= 3 else name
            if short not in out or _version(name) > _version(out[short]):
                out[short] = name
        return out

    def resolve_name(self, ref: str) -> str:
        """A full registered name from itself or its short form (``TextClassifier``)."""
        if ref in self.names():
            return ref
        short = self.short_names()
        if ref in short:
            return short[ref]
        lowered = {k.lower(): v for k, v in short.items()}
        if ref.lower() in lowered:
            return lowered[ref.lower()]
        self.get(ref)  # raises with a did-you-mean
        return ref


def _version(name: str) -> tuple[int, str]:
    """``"acme.Thing.v10"`` → ``(10, name)``: v10 is newer than v9, which text sorts after it."""
    last = name.rsplit(".", 1)[-1]
    return (int(last[1:]) if last[:1] == "v" and last[1:].isdigit() else -1), name


skills: Registry[Any] = Registry("skill", entry_point_group="slmstack.skills")
