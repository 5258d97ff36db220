"""The escalation inbox: open → claimed → resolved, idempotent keys, clear errors."""

from __future__ import annotations

import threading

import pytest

from slmstack import ConfigError
from slmstack.workflows import Inbox, Packet


def packet(**kw):
    base = {"workflow": "desk", "text": "my order is late", "reason": "complaint", "why": "x"}
    return Packet(**(base | kw))


@pytest.fixture
def inbox(tmp_path):
    return Inbox(f"sqlite:///{tmp_path / 'sub' / 'inbox.db'}")


def test_lifecycle(inbox):
    pid = inbox.add(packet(entities=({"label": "ORDER", "text": "ORD-1"},), intent="complaint"))
    p = inbox.get(pid)
    assert (p.status, p.intent, p.entities) == (
        "open",
        "complaint",
        ({"label": "ORDER", "text": "ORD-1"},),
    )
    assert p.created_at is not None and p.created_at.tzinfo is not None
    assert inbox.claim(pid, "ana").claimed_by == "ana"
    with pytest.raises(ConfigError, match="packet 1 is claimed by 'ana'; only open packets"):
        inbox.claim(pid, "bo")
    done = inbox.resolve(pid, "refunded")
    assert (done.status, done.resolution) == ("resolved", "refunded")
    with pytest.raises(ConfigError, match="already resolved"):
        inbox.resolve(pid, "again")
    with pytest.raises(ConfigError, match="no packet with id 99"):
        inbox.get(99)
    assert [x.id for x in inbox.list(status="resolved")] == [pid]
    assert inbox.list(status="open") == []


def test_same_key_from_many_threads_files_one_packet(inbox):
    ids: list[int] = []
    threads = [
        threading.Thread(target=lambda: ids.append(inbox.add(packet(key="row-7"))))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and inbox.count() == 1


def test_bad_url():
    with pytest.raises(ConfigError, match="is not a database URL"):
        Inbox("not a url")
