"""The ``comply`` step: flags in a workflow, escalation with the evidence in the packet."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import ClassVar

import pytest

from slmstack.compliance.rules import RulePack, load_pack
from slmstack.types import Prediction, Span
from slmstack.workflows import WorkflowError, load_workflow
from workflow_doubles import Fixed

CLAUSE = "The Recipient may use the Confidential Information for any purpose."


class FakeChecker:
    """Says every text rule is contradicted when the text has CLAUSE, else entailed."""

    skill_name = "slmstack.ComplianceChecker.v1"
    produces: ClassVar[frozenset[str]] = frozenset({"label", "spans", "data"})

    def __init__(self) -> None:
        self.batches: list[int] = []

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        raise AssertionError("the comply step asks check(texts, pack), not predict")

    def check(self, texts: Sequence[str], pack: RulePack) -> list[Prediction]:
        self.batches.append(len(texts))
        out = []
        for text in texts:
            at = text.find(CLAUSE)
            rules, spans = [], []
            for rule in pack.nli_rules:
                bad = at >= 0
                ev = (
                    [{"start": at, "end": at + len(CLAUSE), "text": CLAUSE, "score": 0.9}]
                    if bad
                    else []
                )
                rules.append(
                    {
                        "id": rule.id,
                        "title": rule.title,
                        "severity": rule.severity,
                        "source": rule.source,
                        "verdict": "contradicted" if bad else "entailed",
                        "confidence": 0.9,
                        "flag": "violated" if bad else "ok",
                        "evidence": ev,
                    }
                )
                spans += [Span(rule.id, e["start"], e["end"], e["text"], 0.9) for e in ev]
            out.append(
                Prediction(
                    label="violated" if at >= 0 else "ok",
                    confidence=0.9,
                    spans=tuple(spans),
                    data={"rules": rules},
                )
            )
        return out


def write(tmp_path, body: str):
    path = tmp_path / "wf.yaml"
    path.write_text(textwrap.dedent(body))
    return path


NDA = """\
name: nda-review
inbox: sqlite:///inbox.db
steps:
  - comply: {pack: nda, use: checker, escalate_on: [violated], reason: NDA breaks policy, id: compliance}
  - template: "cleared: {compliance.label}"
"""


def test_violation_escalates_with_evidence_in_the_packet(tmp_path):
    checker = FakeChecker()
    wf = load_workflow(write(tmp_path, NDA), skills={"checker": checker})
    ok = wf.run("A perfectly fine NDA.")
    assert ok.status != "escalated" and ok.answer == "cleared: ok"
    text = "Preamble. " + CLAUSE + " The end."
    bad = wf.run(text)
    assert bad.status == "escalated"
    packet = wf.inbox.get(bad.escalation.packet_id)
    assert packet.reason == "NDA breaks policy"
    assert packet.why.startswith("worst flag violated: nda-1 violated")
    assert len(packet.entities) == len(load_pack("nda").rules)
    first = packet.entities[0]
    assert first["label"] == "nda-1 (violated)" and first["text"] == CLAUSE
    assert text[int(first["start"]) : int(first["end"])] == CLAUSE
    assert (
        "violated: nda-4 Limited use (high, ContractNLI nda-4 (Limited use)): contradicted"
        in packet.summary
    )
    # batches call the checker once
    results = wf.run_batch(["fine", text, "also fine"])
    assert [r.status == "escalated" for r in results] == [False, True, False]
    assert checker.batches[-1] == 3


def test_a_compliance_packet_carries_the_intent_and_sentiment_found(tmp_path):
    # As an escalate step's packet does: the steps with ids intent and sentiment.
    body = NDA.replace("steps:\n", "steps:\n  - intent\n  - sentiment\n")
    skills = {
        "checker": FakeChecker(),
        "intent": Fixed(Prediction(label="nda", confidence=0.8), produces=frozenset({"label"})),
        "sentiment": Fixed(Prediction(label="neutral"), produces=frozenset({"label"})),
    }
    wf = load_workflow(write(tmp_path, body), skills=skills)
    for r in [wf.run(CLAUSE), *wf.run_batch([CLAUSE])]:
        packet = wf.inbox.get(r.escalation.packet_id)
        assert (packet.intent, packet.intent_confidence, packet.sentiment) == ("nda", 0.8, "neutral")
        assert packet.entities[0]["text"] == CLAUSE, "the evidence stays the packet's entities"


PAYMENT = """\
name: invoices
inbox: sqlite:///inbox.db
steps:
  - skill: {use: extractor, id: invoice}
  - comply: {pack: payment-terms, fields: invoice, escalate_on: [violated, missing], id: terms}
  - template: "paid: {terms.label}"
"""


def fields(**values: str) -> Fixed:
    return Fixed(Prediction(confidence=1.0, data={"fields": {k: {"value": v} for k, v in values.items()}}),
                 produces=frozenset({"data"}))  # fmt: skip


def test_field_rules_run_on_the_extractor_output(tmp_path):
    good = fields(date="2024-03-01", due_date="2024-03-15", subtotal="100", tax="20", total="120")
    wf = load_workflow(write(tmp_path, PAYMENT), skills={"extractor": good})
    assert wf.run("invoice text").answer == "paid: ok"
    late = fields(date="2024-03-01", due_date="2024-06-15", subtotal="100", tax="20", total="120")
    wf = load_workflow(write(tmp_path, PAYMENT), skills={"extractor": late})
    r = wf.run("invoice text")
    assert r.status == "escalated"
    assert "due-within-30-days" in wf.inbox.get(r.escalation.packet_id).summary


def test_step_validation_names_line_and_fix(tmp_path):
    body = NDA.replace("use: checker, ", "")
    with pytest.raises(
        WorkflowError, match=r"wf.yaml:4: steps\[0\].comply.use: pack 'nda' has 17 text rules"
    ):
        load_workflow(write(tmp_path, body), skills={"checker": FakeChecker()})
    body = PAYMENT.replace("fields: invoice", "fields: invoce")
    with pytest.raises(
        WorkflowError, match=r"no earlier step has id 'invoce' \(did you mean 'invoice'\?\)"
    ):
        load_workflow(write(tmp_path, body), skills={"extractor": fields()})
    body = NDA.replace("pack: nda", "pack: missing.yaml")
    with pytest.raises(WorkflowError, match="rule pack missing.yaml does not exist"):
        load_workflow(write(tmp_path, body), skills={"checker": FakeChecker()})
    body = NDA.replace("escalate_on: [violated]", "escalate_on: [bad]")
    with pytest.raises(WorkflowError, match="escalate_on"):
        load_workflow(write(tmp_path, body), skills={"checker": FakeChecker()})
    wrong = Fixed(Prediction(label="x"), produces=frozenset({"label"}))
    with pytest.raises(WorkflowError, match="is a Fixed, not a ComplianceChecker"):
        load_workflow(write(tmp_path, NDA), skills={"checker": wrong})


def test_a_field_rule_shows_the_fields_it_read_as_evidence():
    from slmstack.compliance import load_pack
    from slmstack.compliance.fields import check_fields, field_record
    from slmstack.types import Span

    text = "Invoice date 2024-03-01. Due 2024-06-15."
    pred = Prediction(
        data={"fields": {"date": {"value": "2024-03-01"}, "due_date": {"value": "2024-06-15"}}},
        spans=(Span("date", 13, 23, text[13:23]), Span("due_date", 29, 39, text[29:39])),
    )
    due = check_fields(load_pack("payment-terms"), field_record(pred))[0]
    assert due["flag"] == "violated"
    assert [(e["field"], text[e["start"] : e["end"]] == e["text"]) for e in due["evidence"]] == [
        ("date", True), ("due_date", True)]  # fmt: skip


def test_a_field_rule_reading_a_field_the_extractor_lacks_is_refused_at_load(tmp_path):
    # The extractor calls it `due`, the pack `due_date`: every invoice was flagged
    # "missing" and the 30-day rule never fired (`slmstack comply` refused it; the step not).
    from slmstack.data.fields import parse_schema

    extractor = fields()
    extractor.specs_ = parse_schema(  # type: ignore[attr-defined]
        {"date": "date", "due": "date", "subtotal": "amount", "tax": "amount", "total": "amount"}
    )
    with pytest.raises(
        WorkflowError,
        match=r"wf.yaml:5: steps\[1\].comply.fields: rule 'due-within-30-days' of pack "
        r"'payment-terms' reads 'due_date', which skill 'extractor' .*does not extract "
        r"\(it extracts date, due, subtotal, tax, total\)",
    ):
        load_workflow(write(tmp_path, PAYMENT), skills={"extractor": extractor})
    extractor.specs_ = parse_schema(  # type: ignore[attr-defined]
        {"date": "date", "due_date": "date", "subtotal": "amount", "tax": "amount",
         "total": "amount"}
    )  # fmt: skip
    assert load_workflow(write(tmp_path, PAYMENT), skills={"extractor": extractor})


def test_field_rules_on_a_step_that_gives_no_fields_are_refused_at_load(tmp_path):
    label_only = Fixed(Prediction(label="invoice"), produces=frozenset({"label"}))
    with pytest.raises(WorkflowError, match=r"comply.fields: .*'invoice'.*no data\[\"fields\"\]"):
        load_workflow(write(tmp_path, PAYMENT), skills={"extractor": label_only})
