"""``Inbox.add_many``: a workflow batch's packets in one transaction, as ``add`` would file them."""

from __future__ import annotations

from databases import db_url  # noqa: F401  (fixture: a SQLite file and a PostgreSQL database)
from slmstack.workflows.inbox import Inbox
from slmstack.workflows.packet import Packet


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


def test_each_returned_id_is_its_own_packet(db_url):  # noqa: F811
    """The ids come back in input order: each names the packet filed from that position."""
    inbox = Inbox(db_url)
    inbox.add(_packet("filed before", "k6"))
    packets = [_packet(f"text {i}", None if i % 3 else f"k{i}") for i in range(40)]
    ids = inbox.add_many(packets)
    for packet, packet_id in zip(packets, ids, strict=True):
        stored = inbox.get(packet_id)
        if packet.key == "k6":  # filed before: the earlier packet keeps the key
            assert stored.text == "filed before"
        else:
            assert (stored.text, stored.key) == (packet.text, packet.key)
    assert inbox.count() == 40  # the earlier packet and 39 new ones (k6 was known)
