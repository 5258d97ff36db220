"""``Inbox.add_many``: a workflow batch's packets in one transaction, as ``add`` would file them."""

from __future__ import annotations

from databases import db_url  # noqa: F401  (fixture: a SQLite file and a PostgreSQL database)
from slmstack.workflows.inbox import Inbox, Packet


def _packet(text: str, key: str | None) -> Packet:
    return Packet(workflow="desk", text=text, reason="unsure", why="confidence 0.2", key=key)


def test_add_many_files_in_order_and_keeps_known_keys_once(db_url):  # noqa: F811
    inbox = Inbox(db_url)
    first = inbox.add(_packet("a", "k1"))
    ids = inbox.add_many(
        [_packet("b", None), _packet("a again", "k1"), _packet("c", "k2"), _packet("c", "k2")]
    )
    assert ids[1] == first  # a known key keeps its packet
    assert ids[2] == ids[3]  # the same key twice in one batch: one packet
    assert ids[0] < ids[2] and len(set(ids)) == 3
    assert [p.text for p in inbox.list()] == ["a", "b", "c"]
    assert inbox.add_many([]) == []
    assert inbox.add_many([_packet("c2", "k2")]) == [ids[2]]  # as add() would answer
    assert inbox.count() == 3
