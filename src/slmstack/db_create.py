"""Creating tables when several processes may create them at the same moment.

PostgreSQL's ``CREATE TABLE IF NOT EXISTS`` (what SQLAlchemy's ``create_all`` checks and
sends) is not atomic: two processes starting together on a new database (``slmstack
serve --workers 2``, two batch workers) can both find the table missing, and the second
``CREATE`` then fails on the catalogue's unique index (``pg_class_relname_nsp_index``) or
as a duplicate table. The table exists by then, so trying again finds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

ATTEMPTS = 3


def create_racing(create: Callable[[], Any]) -> None:
    """Run ``create`` (a ``create_all``), again if another process raced it to the table."""
    import sqlalchemy as sa

    for attempt in range(ATTEMPTS):
        try:
            create()
            return
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError) as exc:
            text = str(exc.orig)
            raced = "already exists" in text or "pg_class_relname_nsp_index" in text
            if not raced or attempt == ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))  # the other process commits its CREATE


__all__ = ["create_racing"]
