"""Bringing a ledger made by an earlier slmstack to today's key, without losing a row.

Ledgers made before 2026-12-04 hold rows unique per ``(request_id, path)``
(``uq_slmstack_ledger_request_path``, part of the table). Today a row is unique per
``(workflow, request_id, path)``, so two workflows given one key (a ticket id) keep their
own rows. On such a ledger the old constraint still refused the second workflow's rows, and
every later write of the buffer failed with them. A writer (``Ledger(url)``) therefore
drops it once:

- PostgreSQL: ``ALTER TABLE ... DROP CONSTRAINT``, in one transaction;
- SQLite, which cannot drop a table's constraint: the table is rebuilt as SQLite's manual
  describes (new table, every row copied with its id, old table dropped, new one renamed,
  indexes made), in one ``BEGIN IMMEDIATE`` transaction, so a failure leaves the old table
  as it was and other writers wait rather than write in between.
"""

from __future__ import annotations

import logging
from typing import Any

OLD_UNIQUE = "uq_slmstack_ledger_request_path"
_log = logging.getLogger(__name__)


def drop_old_unique(engine: Any, table: Any, shown: str) -> bool:
    """Drop the old ``(request_id, path)`` key from ``table`` if it has it; whether it had.

    ``table`` is today's SQLAlchemy table (its columns and indexes are what a rebuilt
    SQLite table gets); ``shown`` names the ledger in the log.
    """
    import sqlalchemy as sa

    found = sa.inspect(engine).get_unique_constraints(table.name)
    if not any(c.get("name") == OLD_UNIQUE for c in found):
        return False
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(
                sa.text(f"ALTER TABLE {table.name} DROP CONSTRAINT IF EXISTS {OLD_UNIQUE}")
            )
    elif not _rebuild_sqlite(engine, table):
        return False  # another writer migrated it first
    _log.warning(
        "ledger %s: rows are now unique per (workflow, request_id, path), no longer per "
        "(request_id, path); every row kept", shown,
    )  # fmt: skip
    return True


def _rebuild_sqlite(engine: Any, table: Any) -> bool:
    """Rebuild ``table`` without the old key; ``False`` when it no longer had it."""
    import sqlalchemy as sa
    from sqlalchemy.schema import CreateIndex, CreateTable

    new = f"{table.name}_new"
    twin = table.to_metadata(sa.MetaData(), name=new)  # its indexes are made after the rename
    old_columns = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
    columns = ", ".join(c.name for c in table.columns if c.name in old_columns)
    dialect = engine.dialect
    statements = [
        str(CreateTable(twin).compile(dialect=dialect)),
        f"INSERT INTO {new} ({columns}) SELECT {columns} FROM {table.name}",
        f"DROP TABLE {table.name}",
        f"ALTER TABLE {new} RENAME TO {table.name}",
        *(str(CreateIndex(i).compile(dialect=dialect)) for i in table.indexes),
    ]
    raw = engine.raw_connection()
    db = raw.driver_connection
    before, db.isolation_level = db.isolation_level, None  # the statements below: one transaction
    try:
        cursor = db.cursor()
        cursor.execute("BEGIN IMMEDIATE")  # a second writer waits here, then finds it done
        try:
            cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                           (table.name,))  # fmt: skip
            if OLD_UNIQUE not in (cursor.fetchone() or [""])[0]:
                cursor.execute("ROLLBACK")
                return False
            for statement in statements:
                cursor.execute(statement)
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")
        return True
    finally:
        db.isolation_level = before  # the pooled connection goes back as SQLAlchemy set it
        raw.close()


__all__ = ["OLD_UNIQUE", "drop_old_unique"]
