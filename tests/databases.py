"""A `db_url` fixture over SQLite and a real PostgreSQL, for the inbox and ledger suites.

PostgreSQL comes from $SLMSTACK_TEST_PG_URL (scripts/test.sh starts a throwaway cluster and
sets it). Each test gets a fresh database, dropped afterwards. Without the variable the
PostgreSQL case is skipped locally, and fails under CI=1: the inbox and ledger claim to
support PostgreSQL, and CI must prove it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_ENV = "SLMSTACK_TEST_PG_URL"


def _postgres_database() -> Iterator[str]:
    url = os.environ.get(PG_ENV)
    if not url:
        message = f"${PG_ENV} is not set: run scripts/test.sh, which starts a PostgreSQL"
        if os.environ.get("CI"):
            pytest.fail(f"CI=1 needs the PostgreSQL tests, but {message}")
        pytest.skip(message)
    import sqlalchemy as sa

    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"slmstack_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file in a new folder, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sub' / 'test.db'}"
    else:
        yield from _postgres_database()
