"""SQLite files in WAL mode: the ledger, the inbox and the proxy's tables; readers never wait."""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import UTC, datetime

import pytest

from slmstack.costs import Ledger, LedgerRow
from slmstack.sqlite_files import use_wal
from slmstack.workflows import Inbox


def journal_mode(path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])


def row(request_id: str) -> LedgerRow:
    return LedgerRow(request_id, "", "desk", "", "run", datetime.now(UTC), cost_nusd=7)


def test_the_ledger_and_the_inbox_files_are_in_wal_mode(tmp_path):
    Ledger(f"sqlite:///{tmp_path / 'ledger.db'}").close()
    Inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    assert journal_mode(tmp_path / "ledger.db") == "wal"
    assert journal_mode(tmp_path / "inbox.db") == "wal"


def test_the_proxy_tables_are_in_wal_mode(tmp_path):
    from slmstack.proxy.traffic import TrafficStore

    TrafficStore(f"sqlite:///{tmp_path / 'traffic.db'}")
    assert journal_mode(tmp_path / "traffic.db") == "wal"


def test_a_reader_reads_the_last_commit_while_a_writer_holds_the_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger(url) as writer:
        writer.append([row("r1")])
    holder = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None, timeout=0.1)
    holder.execute("BEGIN EXCLUSIVE")  # a writer in the middle of its transaction
    holder.execute("DELETE FROM slmstack_ledger")
    seen: list[list[str]] = []
    reader = threading.Thread(
        target=lambda: seen.append([r.request_id for r in Ledger(url, create=False).rows()])
    )
    reader.start()
    reader.join(3)  # with a rollback journal the reader waits out its busy timeout (5 s), then fails
    answered = not reader.is_alive()
    holder.execute("ROLLBACK")
    holder.close()
    reader.join(10)
    assert answered and seen == [["r1"]]  # the last committed state, not the delete


def test_memory_databases_are_left_alone(tmp_path):
    with Ledger("sqlite:///:memory:") as ledger:
        ledger.append([row("r1")])
        assert len(ledger.rows()) == 1


def test_a_file_that_cannot_switch_is_named_in_a_warning(tmp_path, caplog):
    import sqlalchemy as sa

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (a INTEGER)")
    engine = sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    use_wal(engine)
    with caplog.at_level(logging.WARNING, logger="slmstack.sqlite"), engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 0
    engine.dispose()
    assert any("old.db could not switch to write-ahead logging (attempt to write a readonly"
               in r.getMessage() for r in caplog.records)  # fmt: skip


def test_the_switch_turns_it_off_and_a_bad_value_is_a_config_error(tmp_path, monkeypatch):
    from slmstack.errors import ConfigError

    monkeypatch.setenv("SLMSTACK_SQLITE_WAL", "0")
    Ledger(f"sqlite:///{tmp_path / 'ledger.db'}").close()
    assert journal_mode(tmp_path / "ledger.db") == "delete"
    monkeypatch.setenv("SLMSTACK_SQLITE_WAL", "maybe")
    with pytest.raises(ConfigError, match=r"SLMSTACK_SQLITE_WAL='maybe': expected 1"):
        Ledger(f"sqlite:///{tmp_path / 'other.db'}")


@pytest.mark.parametrize(("switch", "mode"), [("1", "wal"), ("0", "delete")])
def test_the_shared_rate_store_follows_the_switch(tmp_path, monkeypatch, switch, mode):
    from slmstack.serve.rates import SharedRateLimiter

    monkeypatch.setenv("SLMSTACK_SQLITE_WAL", switch)
    limiter = SharedRateLimiter(f"sqlite:///{tmp_path / 'rates.db'}", 60)
    limiter.check("ops")
    limiter.close()
    assert journal_mode(tmp_path / "rates.db") == mode


def test_a_folder_that_cannot_be_made_is_an_error_of_the_tree_with_the_fix(tmp_path):
    from slmstack.errors import ConfigError, InboxError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    url = f"sqlite:///{blocker / 'sub' / 'x.db'}"
    with pytest.raises(InboxError, match="cannot create the folder of the inbox.*PostgreSQL"):
        Inbox(url)
    with pytest.raises(ConfigError, match="cannot create the folder of the ledger"):
        Ledger(url)
    assert blocker.read_text() == "not a folder"
