"""Knowledge-base updates of a fitted ``FAQAnswerer``: add, replace, remove entries.

An update never changes what a prediction running at the same time reads: the new
entries' questions are encoded first (a failure there leaves the skill as it was), then
a new index and a new entry table are built aside and put in place, each in one
assignment. A prediction reads the index first and the entries after it, so the order of
the two assignments keeps every key it can see in the table: added entries go in before
the index that finds them; a removal takes them out of the index first.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Self

import numpy as np
from numpy.typing import NDArray

from slmstack.errors import DataError
from slmstack.retrieval.index import VectorIndex
from slmstack.retrieval.knowledge import KBEntry, validate_kb


class KBUpdates:
    """The update methods :class:`~slmstack.skills.faq.FAQAnswerer` offers once fitted."""

    entries_: dict[str, KBEntry]
    index_: VectorIndex

    if TYPE_CHECKING:

        def _require_fitted(self) -> None: ...

        def _encode_entries(
            self, entries: Sequence[KBEntry]
        ) -> tuple[list[str], list[str], NDArray[np.float32]]: ...

    def add(self, entries: Sequence[KBEntry]) -> Self:
        """Add entries (embedded now; no retraining). Ids must be new."""
        self._require_fitted()
        clash = [e.id for e in entries if e.id in self.entries_]
        if clash:
            raise DataError(f"entries {clash[:5]} already exist; use replace() to change them")
        validate_kb([*self.entries_.values(), *entries])
        keys, texts, vectors = self._encode_entries(list(entries))
        index = self.index_.copy()
        index.add(keys, texts, vectors)
        self.entries_ = {**self.entries_, **{e.id: e for e in entries}}
        self.index_ = index
        return self

    def remove(self, ids: Collection[str]) -> Self:
        """Remove entries by id. Unknown ids are an error (typos would pass silently)."""
        self._require_fitted()
        unknown = sorted(set(ids) - set(self.entries_))
        if unknown:
            raise DataError(
                f"no entries with ids {unknown[:5]}; known ids include {list(self.entries_)[:5]}"
            )
        if len(set(ids)) >= len(self.entries_):
            raise DataError("removing every entry would leave an empty knowledge base")
        index = self.index_.copy()
        index.remove(set(ids))
        self.index_ = index
        self.entries_ = {k: e for k, e in self.entries_.items() if k not in set(ids)}
        return self

    def replace(self, entries: Sequence[KBEntry]) -> Self:
        """Replace existing entries (same ids) with new questions and answers."""
        self._require_fitted()
        missing = [e.id for e in entries if e.id not in self.entries_]
        if missing:
            raise DataError(f"entries {missing[:5]} do not exist; use add() for new entries")
        ids = {e.id for e in entries}
        validate_kb([*(e for e in self.entries_.values() if e.id not in ids), *entries])
        keys, texts, vectors = self._encode_entries(list(entries))
        index = self.index_.copy()
        index.remove(ids)
        index.add(keys, texts, vectors)
        self.entries_ = {**self.entries_, **{e.id: e for e in entries}}
        self.index_ = index
        return self

    @property
    def kb(self) -> list[KBEntry]:
        """The current entries."""
        self._require_fitted()
        return list(self.entries_.values())
