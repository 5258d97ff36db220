"""The ledger's rows on their way to the database: a buffer, and its one-insert write.

Rows wait in memory keyed by ``(workflow, request_id, path)``; the first row of a key wins, as
``ON CONFLICT DO NOTHING`` does in the table. A write takes the rows buffered at that
moment and sends them as one multi-row insert. The buffer's lock is held only to take
them, never across the database round trip, so an ``append`` (on a server, possibly on
its event loop) never waits on the database; a second lock keeps writes one at a time,
so that when ``write`` returns, everything buffered before the call has been written.
Rows of a failed write go back to the buffer, ahead of newer ones, and stay there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from slmstack.errors import ConfigError


class RowBuffer:
    """Rows not yet written, keyed ``(workflow, request_id, path)``, oldest first."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, ...], dict[str, Any]] = {}
        self.lock = threading.Lock()  # the dict; held for microseconds
        self.writing = threading.Lock()  # one write at a time
        self.oldest = 0.0  # when the oldest waiting row came (time.monotonic)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, keyed: Iterable[tuple[tuple[str, ...], dict[str, Any]]], now: float) -> int:
        """Buffer rows (a key already waiting keeps its row); the rows now waiting."""
        with self.lock:
            if not self.rows:
                self.oldest = now
            for key, values in keyed:
                self.rows.setdefault(key, values)
            return len(self.rows)

    def write(self, engine: Any, table: Any, url: str) -> int:
        """Insert the rows buffered now (``ON CONFLICT DO NOTHING``); how many were sent.

        Raises:
            ConfigError: the database refused the insert; the rows stay buffered.
        """
        import sqlalchemy as sa
        from sqlalchemy.dialects import postgresql, sqlite

        from slmstack.costs.ledger import KEY_COLUMNS, shown_url

        with self.writing:
            with self.lock:
                if not self.rows:
                    return 0
                taken = dict(self.rows)
                self.rows.clear()
            sent = len(taken)
            dialect = sqlite if engine.dialect.name == "sqlite" else postgresql
            stmt = dialect.insert(table).on_conflict_do_nothing(index_elements=list(KEY_COLUMNS))
            try:
                with engine.begin() as conn:
                    conn.execute(stmt, list(taken.values()))
            except Exception as exc:
                with self.lock:  # back in front of what came meanwhile: first write wins
                    for key, values in self.rows.items():
                        taken.setdefault(key, values)
                    self.rows.clear()
                    self.rows.update(taken)
                if not isinstance(exc, sa.exc.DatabaseError):
                    raise
                raise ConfigError(
                    f"cannot write {sent} rows to the ledger {shown_url(url)}: "
                    f"{exc.orig}; they stay buffered: fix the database, then call flush() again"
                ) from None
            return sent


def write_or_log(buffer: RowBuffer, engine: Any, table: Any, url: str) -> None:
    """:meth:`RowBuffer.write` when a ledger is dropped or at exit: a failure is logged."""
    try:
        buffer.write(engine, table, url)
    except ConfigError as exc:
        logging.getLogger("slmstack.costs.ledger").error(
            "%s (the ledger was dropped or the process ended)", exc
        )


__all__ = ["RowBuffer", "write_or_log"]
