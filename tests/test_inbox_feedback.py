"""The agent's side of the inbox: search, replies, labelled examples and their export."""

from __future__ import annotations

import json

import pytest

from slmstack.data.readers import read_examples
from slmstack.errors import ConfigError, DataError
from slmstack.workflows import Inbox, Packet
from slmstack.workflows.inbox_feedback import InboxFeedback


@pytest.fixture
def feedback(tmp_path):
    inbox = Inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    texts = [("desk", "card never arrived", "card"), ("desk", "refund 50% of order_1", "refund"),
             ("billing", "charged twice", "refund")]  # fmt: skip
    for workflow, text, intent in texts:
        inbox.add(Packet(workflow=workflow, text=text, reason="unclear", why="low", intent=intent))
    return InboxFeedback(inbox)


def test_search_filters_in_sql_newest_first(feedback):
    page = feedback.search()
    assert [p.id for p in page.packets] == [3, 2, 1] and page.total == 3
    assert [p.id for p in feedback.search(workflow="billing").packets] == [3]
    assert [p.id for p in feedback.search(query="REFUND").packets] == [3, 2]  # intent or text
    # LIKE wildcards in the query are literal characters.
    assert [p.id for p in feedback.search(query="50%").packets] == [2]
    assert feedback.search(query="_").total == 1
    assert feedback.search(query="nothing like it").packets == []
    second = feedback.search(limit=2, offset=2)
    assert [p.id for p in second.packets] == [1] and second.total == 3
    older = feedback.search(limit=1, before=3)  # anchored on ids: the page after id 3
    assert [p.id for p in older.packets] == [2] and (older.total, older.newer) == (3, 1)
    assert [p.id for p in feedback.search(limit=1, after=1).packets] == [2]  # the page above
    feedback.inbox.claim(1, "ana")
    assert [p.id for p in feedback.search(status="claimed").packets] == [1]
    assert feedback.counts() == {"open": 2, "claimed": 1, "resolved": 0}
    assert feedback.workflows() == ["billing", "desk"]


def test_search_ignores_case_beyond_ascii(feedback):
    # SQLite's own lower() and LIKE fold ASCII only: "Ü" would match neither "ü" nor itself
    # once the query is lowered.
    feedback.inbox.add(Packet(workflow="desk", text="Überweisung fehlt", reason="r", why="w"))
    for query in ("Überweisung", "überweisung", "ÜBERWEISUNG", "FEHLT"):
        assert [p.text for p in feedback.search(query=query).packets] == ["Überweisung fehlt"]


def test_replies_are_kept_in_order_and_checked(feedback):
    feedback.reply(1, "Looking into it.", who="ana")
    feedback.reply(1, "Sent a new card.", who="ben")
    assert [(r.who, r.text) for r in feedback.replies(1)] == [
        ("ana", "Looking into it."),
        ("ben", "Sent a new card."),
    ]
    assert feedback.replies(2) == []
    with pytest.raises(DataError, match="reply is empty"):
        feedback.reply(1, "   ", who="ana")
    with pytest.raises(ConfigError, match="no packet with id 9"):
        feedback.reply(9, "hello", who="ana")


def test_labelling_again_replaces_the_label_of_that_task(feedback):
    feedback.save_example(2, "refund", who="ana")
    feedback.save_example(2, "billing", who="ben")  # a correction
    feedback.save_example(2, "negative", who="ben", task="sentiment")
    rows = feedback.examples(packet_id=2)
    assert [(e.task, e.label, e.who) for e in rows] == [
        ("intent", "billing", "ben"),
        ("sentiment", "negative", "ben"),
    ]
    assert rows[0].text == "refund 50% of order_1"
    with pytest.raises(ConfigError, match="not a task name"):
        feedback.save_example(2, "x", who="ana", task="Intent!")
    with pytest.raises(DataError, match="label is empty"):
        feedback.save_example(2, " ", who="ana")


def test_export_writes_training_data_the_trainer_reads(feedback, tmp_path):
    with pytest.raises(DataError, match="no labelled 'intent' examples"):
        feedback.export(tmp_path / "none.jsonl")
    feedback.save_example(1, "card", who="ana")
    feedback.save_example(3, "refund", who="ana")
    feedback.save_example(2, "negative", who="ana", task="sentiment")
    old = tmp_path / "train.csv"
    old.write_text("text,label\nwhere is my card,card\nmoney back,refund\n")
    out = tmp_path / "out" / "examples.jsonl"
    assert feedback.export(out, mix_with=old) == 4
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0] == {**rows[0], "text": "card never arrived", "label": "card", "packet_id": 1}
    examples = read_examples(out)
    assert [(e.text, e.label) for e in examples] == [
        ("card never arrived", "card"), ("charged twice", "refund"),
        ("where is my card", "card"), ("money back", "refund"),
    ]  # fmt: skip
    with pytest.raises(DataError, match="examples exist for: intent, sentiment"):
        feedback.export(tmp_path / "x.jsonl", task="faq")
    # the training data is never replaced, nor any file an export did not write
    with pytest.raises(DataError, match="is also --mix-with"):
        feedback.export(old, mix_with=old)
    with pytest.raises(DataError, match="is not a .jsonl file"):
        feedback.export(old)
    assert old.read_text() == "text,label\nwhere is my card,card\nmoney back,refund\n"
    mine = tmp_path / "train.jsonl"  # training data looks like an export: text and label
    mine.write_text('{"text": "my card is lost", "label": "card"}\n')
    with pytest.raises(DataError, match="not an examples file this command wrote"):
        feedback.export(mine)
    assert mine.read_text() == '{"text": "my card is lost", "label": "card"}\n'
    assert feedback.export(out) == 2  # an earlier export is replaced, as asked


def test_who_replies_or_labels_is_checked_as_claim_checks_it(feedback):
    """A blank, oversized or NUL name is refused by the library, not stored (or a 500 on
    PostgreSQL, whose column holds 200 characters and no NUL)."""
    for who, match in [("  ", "name is empty"), ("a" * 201, "name has 201 characters"),
                       ("ana\x00", "name holds a NUL")]:  # fmt: skip
        with pytest.raises(DataError, match=match):
            feedback.reply(1, "Looking into it.", who=who)
        with pytest.raises(DataError, match=match):
            feedback.save_example(1, "card", who=who)
    assert feedback.replies(1) == [] and feedback.examples() == []
    assert feedback.reply(1, "ok", who=" ana ").who == "ana"
    assert feedback.save_example(1, "card", who=" ana ").who == "ana"
