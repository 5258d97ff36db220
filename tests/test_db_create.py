"""Tables created by several processes at once: a raced CREATE is tried again."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from slmstack.db_create import create_racing


class _Orig(Exception):
    pass


def _raced(message: str) -> sa.exc.IntegrityError:
    return sa.exc.IntegrityError("CREATE TABLE ...", {}, _Orig(message))


def test_a_create_raced_by_another_process_is_tried_again():
    calls: list[int] = []

    def create() -> None:
        calls.append(1)
        if len(calls) == 1:  # as PostgreSQL answers the second of two concurrent CREATEs
            raise _raced('duplicate key value violates unique constraint "pg_class_relname_nsp_index"')

    create_racing(create)
    assert len(calls) == 2


def test_any_other_failure_is_raised_at_once():
    calls: list[int] = []

    def create() -> None:
        calls.append(1)
        raise _raced('null value in column "x" violates not-null constraint')

    with pytest.raises(sa.exc.IntegrityError):
        create_racing(create)
    assert len(calls) == 1


def test_a_lasting_failure_is_raised_after_the_last_attempt():
    def create() -> None:
        raise sa.exc.ProgrammingError("CREATE", {}, _Orig('relation "t" already exists'))

    with pytest.raises(sa.exc.ProgrammingError):
        create_racing(create)
