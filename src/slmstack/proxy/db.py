"""The proxy's tables share one database with the cost ledger, opened the ledger's way.

SQLite by default (``sqlite:///PATH``: the folder is made for a writer, the file must
exist for a reader), PostgreSQL by URL (``postgresql+psycopg://USER@HOST/DB``); anything
else, or a database that cannot be opened, is a :class:`~slmstack.errors.ConfigError`
that says what to pass instead. A table written by an older version gains the columns
added since (each nullable or with a default, so the old rows stay valid) with ``ALTER
TABLE ... ADD COLUMN`` when it is opened; a missing column without either is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slmstack.costs.ledger import shown_url
from slmstack.db_create import create_racing
from slmstack.errors import ConfigError, MissingDependencyError
from slmstack.sqlite_files import make_folder, use_wal

_DIALECTS = ("sqlite", "postgresql")
_log = logging.getLogger("slmstack.proxy")


def open_tables(
    url: str, define: Callable[[Any], Any], *, create: bool, what: str, hint: str = ""
) -> Any:
    """An engine on ``url`` whose tables (``define(metadata)``) exist.

    Args:
        url: the database URL.
        define: adds the tables to a ``sqlalchemy.MetaData`` and returns the main one.
        create: make the SQLite file and the tables when missing (a writer); a reader
            passes ``False`` and gets an error when the main table is missing.
        what: what the tables hold, for messages ("recorded traffic").
        hint: what else to do when the main table is missing, after the usual advice.

    Returns:
        ``(engine, table)``.
    """
    try:
        import sqlalchemy as sa
    except ImportError as exc:
        raise MissingDependencyError("sqlalchemy", "proxy", f"The {what}") from exc
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        file = Path(url.removeprefix("sqlite:///"))
        if create:
            make_folder(file, what, ConfigError)
        elif not file.is_file():
            raise ConfigError(
                f"database {file} does not exist; pass the --ledger `slmstack proxy` records "
                "to (sqlite:///PATH or a PostgreSQL URL)"
            )
    try:  # the dialect first: another's driver is no fix (pip install 'slmstack[postgres]')
        backend = sa.engine.make_url(url).get_backend_name()
        if backend not in _DIALECTS:
            raise ConfigError(
                f"the {what} lives in SQLite or PostgreSQL; {shown_url(url)} is {backend}: "
                "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
            )
        engine = sa.create_engine(url)
        use_wal(engine)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(
            f"{shown_url(url)!r} is not a database URL ({exc}); use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB"
        ) from exc
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(
            exc.name or "a database driver", "postgres", f"The {what} at {shown_url(url)!r}"
        ) from exc
    table = define(sa.MetaData())
    try:
        if create:
            create_racing(lambda: table.metadata.create_all(engine))
        elif not sa.inspect(engine).has_table(table.name):
            raise ConfigError(
                f"{shown_url(url)} holds no {what} (no {table.name!r} table); pass the "
                f"--ledger URL that `slmstack proxy` recorded to{hint}"
            )
        _add_columns(engine, table.metadata)
    except sa.exc.DatabaseError as exc:
        raise ConfigError(
            f"cannot open {shown_url(url)}: {exc.orig}; check the path or server"
        ) from None
    return engine, table


def _add_columns(engine: Any, meta: Any) -> None:
    """Add the columns an older version's tables lack (see the module)."""
    import sqlalchemy as sa

    inspector = sa.inspect(engine)
    for table in meta.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c for c in table.columns if c.name not in have]
        if not missing:
            continue
        for column in missing:
            if not column.nullable and column.server_default is None:
                raise ConfigError(
                    f"table {table.name} in {shown_url(str(engine.url))} has no column "
                    f"{column.name!r}, which cannot be added to the rows it holds; record to a "
                    "new --ledger database"
                )
        with engine.begin() as conn:
            for column in missing:
                ddl = sa.schema.CreateColumn(column).compile(dialect=engine.dialect)
                name = engine.dialect.identifier_preparer.quote(table.name)
                conn.execute(sa.text(f"ALTER TABLE {name} ADD COLUMN {ddl}"))
        _log.warning("table %s upgraded: added %s", table.name,
                     ", ".join(c.name for c in missing))  # fmt: skip


def insert_new(engine: Any, table: Any, values: list[dict[str, Any]], key: list[str]) -> int:
    """One multi-row ``INSERT ... ON CONFLICT (key) DO NOTHING``; the rows sent."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite

    if not values:
        return 0
    dialect = sqlite if engine.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(table).on_conflict_do_nothing(index_elements=key)
    try:
        with engine.begin() as conn:
            conn.execute(stmt, values)
    except sa.exc.DatabaseError as exc:
        raise ConfigError(
            f"cannot write {len(values)} rows to {table.name} in {shown_url(str(engine.url))}: "
            f"{exc.orig}"
        ) from None
    return len(values)


__all__ = ["insert_new", "open_tables"]
