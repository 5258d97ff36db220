"""SQLite files in write-ahead-log mode: the ledger, the inbox and the proxy's tables.

Every connection slmstack opens on a SQLite *file* asks for ``journal_mode=WAL`` and
keeps ``synchronous=FULL`` (a commit is on disk when it returns, as before). Why, measured
on this project's 2-core machines (``bench/sqlite_wal.py``, ext4, both modes in one run):

- **A commit costs a third**: ``Inbox.add`` of one packet (its own commit) takes 0.335 ms
  p50 in WAL with full sync against 1.082 ms with the default rollback journal (one fsync
  of the log instead of the journal and the database). The inbox files an escalation
  packet as its own commit; the proxy records each call.
- **Readers never wait for a writer.** With a rollback journal a writer holding the
  file's lock (a server flushing its ledger, a batch filing packets) makes every reader
  (``slmstack cost report``, the console, a second worker) wait or fail with "database is
  locked"; in WAL mode they read the last committed state at once.

WAL is a property of the file, kept once set; a file on a filesystem without shared
memory (some network mounts) cannot use it, and SQLite keeps the old journal: that is
logged as a warning naming the file, never silent. ``sqlite:///:memory:`` and other
databases are left as they are. The two side files (``NAME-wal``, ``NAME-shm``) live
beside the database and go away when the last connection closes cleanly.

The shared rate store of ``slmstack serve --workers N`` (``slmstack.serve.rates``) uses
the same function with ``synchronous=NORMAL`` (soft rows, no fsync per commit).
``SLMSTACK_SQLITE_WAL=0`` leaves new files in the rollback journal, for a file that
processes on *several hosts* share over a network mount (WAL's shared memory is local to
one host); any other value than 1 or 0 is a ``ConfigError``.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any, Literal

from slmstack.switches import env_switch

WAL_ENV = "SLMSTACK_SQLITE_WAL"

_log = logging.getLogger("slmstack.sqlite")


def make_folder(file: Path, what: str, error: type[Exception]) -> None:
    """Create the folder of the SQLite ``file``; ``error`` names it and the fix when it can't.

    ``what`` names the database in the message (``"inbox"``, ``"ledger"``); ``error`` is
    the error class of the caller's part of the tree (an ``InboxError`` for the inbox).
    """
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise error(
            f"cannot create the folder of the {what} database {file} ({exc.strerror or exc}); "
            "use a sqlite:///PATH in a folder this process can write, or a PostgreSQL URL"
        ) from exc


def wal_enabled() -> bool:
    """``SLMSTACK_SQLITE_WAL``: 1 (the default) or 0.

    Raises:
        ConfigError: any other value.
    """
    return env_switch(WAL_ENV, on_means="write-ahead log")


def use_wal(engine: Any, *, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> None:
    """Make every connection of ``engine`` use WAL, if it is a SQLite file.

    Call it right after ``sqlalchemy.create_engine``, before the first connection.
    ``synchronous="NORMAL"`` skips the fsync per commit: for rows that need no
    durability (the rate store's buckets), never for the ledger or the inbox.
    """
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return
    if not wal_enabled():
        return
    import sqlalchemy as sa

    file = engine.url.database

    @sa.event.listens_for(engine, "connect")
    def _wal(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        try:
            mode = str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            cursor.execute(f"PRAGMA synchronous={synchronous}")  # FULL: as with the journal
        except sqlite3.OperationalError as exc:  # read-only, or locked by another process
            _log.warning(
                "SQLite file %s could not switch to write-ahead logging (%s); this connection "
                "keeps its journal, so readers may wait for writers",
                file,
                exc,
            )
            return
        finally:
            cursor.close()
        if mode != "wal":
            _log.warning(
                "SQLite file %s stays in %s journal mode (write-ahead logging needs shared "
                "memory: a local disk, not a network mount); readers will wait for writers",
                file,
                mode,
            )


__all__ = ["WAL_ENV", "use_wal", "wal_enabled"]
