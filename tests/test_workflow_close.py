"""`Workflow.close()`: the ledger flushed and closed, the inbox and the thread pools released."""

from __future__ import annotations

import sqlite3
import threading

from slmstack import Prediction
from slmstack.workflows import EscalateStep, Inbox, ParallelStep, SkillStep, Workflow
from workflow_doubles import Fixed


def pool_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("slmstack-both")]


def test_close_flushes_the_ledger_and_releases_the_pool_and_the_inbox(tmp_path):
    skills = {"a": Fixed(Prediction(label="x", confidence=0.9)),
              "b": Fixed(Prediction(label="y", confidence=0.9))}  # fmt: skip
    ledger, inbox = tmp_path / "ledger.db", tmp_path / "inbox.db"
    with Workflow(
        [ParallelStep([SkillStep("a"), SkillStep("b")], id="both"), EscalateStep("check")],
        skills=skills,
        ledger=f"sqlite:///{ledger}",
        inbox=f"sqlite:///{inbox}",
    ) as wf:
        result = wf.run("hello")
        assert result.status == "escalated" and pool_threads()
    assert not pool_threads()  # the branches' pool was shut down
    with sqlite3.connect(ledger) as db:  # the buffered rows were written on close
        runs = db.execute("select count(*) from slmstack_ledger where kind='run'").fetchone()
        assert runs == (1,)
    assert wf.inbox.get(result.escalation.packet_id) is not None  # reopened on use after close
    wf.close()


def test_an_inbox_passed_in_is_left_open(tmp_path):
    given = Inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    wf = Workflow([EscalateStep("check")], skills={}, inbox=given)
    packet_id = wf.run("hello").escalation.packet_id
    wf.close()
    assert given.get(packet_id) is not None


def test_a_hand_off_inside_a_parallel_branch_carries_what_the_other_branches_found(tmp_path):
    from slmstack.workflows import CascadeStep
    from workflow_doubles import KeywordClassifier, Tagger

    check = CascadeStep([SkillStep("cond"), EscalateStep("unsure")], threshold=0.9, id="check")
    skills = {
        "intent": KeywordClassifier({"refund": 0.8}),
        "cond": KeywordClassifier({"refund": 0.2}),
        "entities": Tagger({"Acme": "ORG"}),
    }
    wf = Workflow(
        [ParallelStep([SkillStep("intent"), check, SkillStep("entities")])],
        skills=skills,
        inbox=f"sqlite:///{tmp_path / 'inbox.db'}",
    )
    result = wf.run("refund for my Acme order")
    assert result.status == "escalated" and result.answer == "(escalated to human: unsure)"
    packet = wf.inbox.get(result.escalation.packet_id)
    assert packet.intent == "refund" and packet.intent_confidence == 0.8
    assert packet.entities == ({"label": "ORG", "text": "Acme"},)
    wf.close()
