"""``Workflow.run_batch``: each step once per batch, and for every text what ``run`` gives."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from run_batch_checks import (
    assert_close,
    assert_same_ledger,
    assert_same_packets,
    assert_same_results,
    no_latency,
    run_both,
)
from slmstack import ConfigError, DataError, Prediction
from slmstack.costs import Ledger
from slmstack.errors import SkillError
from slmstack.types import Usage
from slmstack.workflows import (
    BlockStep,
    CascadeStep,
    EscalateStep,
    Inbox,
    MergeStep,
    ParallelStep,
    RouteStep,
    SequenceStep,
    SkillStep,
    TemplateStep,
    Workflow,
    run_batch,
)
from workflow_doubles import (
    Echo,
    FakeBackend,
    Fixed,
    FlakyBackend,
    KeywordClassifier,
    Raising,
    Tagger,
    account_and_complaint,
)


class Counting:
    """Wraps a skill and records the texts of each ``predict`` call."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.calls: list[list[str]] = []
        for attr in ("produces", "classes_"):
            if hasattr(inner, attr):
                setattr(self, attr, getattr(inner, attr))

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.calls.append(list(texts))
        return self.inner.predict(texts)


class FirstWord:
    """A language detector: ``de`` or ``fr`` when the text starts with it, else ``en``."""

    produces: ClassVar[frozenset[str]] = frozenset({"label"})
    classes_: ClassVar[list[str]] = ["de", "fr", "en"]

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        firsts = [t.split()[0] for t in texts]
        return [Prediction(label=w if w in ("de", "fr") else "en", confidence=0.9) for w in firsts]


class Answerer:
    """Answers a text without a question mark; abstains on one with a question mark."""

    produces: ClassVar[frozenset[str]] = frozenset({"text", "label"})

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return [
            Prediction(abstained="no_match", confidence=0.1)
            if "?" in t
            else Prediction(
                text=f"answer to {t}", label="entry", confidence=0.8, usage=Usage(input_tokens=5)
            )
            for t in texts
        ]


TEXTS = [
    "faq opening hours",
    "faq do you ship abroad?",  # the answerer abstains → a person
    "de faq Versand",
    "de faq Versand?",
    "fr une question",  # no French branch → the default: an LLM answers
    "account change e-mail to ana@x.io",
    "account order ORD-1, ana@x.io",
    "complaint: order ORD-1 never came",
    "refund for ORD-1 please",
    "maybe a refund",  # tier 1 unsure → tier 2 sure
    "maybe nothing at all",  # both tiers unsure → a person
    "cancel my plan",  # a parallel branch hands off
    "weather today",  # a label without a branch → the default
    "",
    "   ",
    "faq opening hours",  # the same text twice
    "complaint: the parcel was wet, ana@x.io",
]


def doubles() -> tuple[dict[str, Counting], FakeBackend]:
    """Fresh skills (each wrapped to count its calls) and an LLM backend."""
    skills = {
        "lang": FirstWord(),
        "intent": KeywordClassifier(
            {
                "maybe": 0.3,
                "faq": 0.9,
                "account": 0.8,
                "complaint": 0.95,
                "refund": 0.7,
                "cancel": 0.9,
                "weather": 0.6,
            }
        ),
        "intent_big": KeywordClassifier({"refund": 0.9, "maybe": 0.4}),
        "answerer": Answerer(),
        "sentiment": Fixed(
            Prediction(label="negative", confidence=0.8), produces=frozenset({"label"})
        ),
        "entities": Tagger({"ORD-1": "ORDER", "ana@x.io": "EMAIL"}),
        "summarizer": Echo(),
    }
    return {k: Counting(v) for k, v in skills.items()}, FakeBackend("LLM says hi")


def everything(skills: dict[str, Counting], backend: FakeBackend, tmp: Path, tag: str) -> Workflow:
    """A workflow with every step kind, its own inbox and ledger under ``tmp``."""
    answer = CascadeStep(
        [SkillStep("answerer", id="answer"), EscalateStep("no answer", message="Soon.")],
        threshold=0.0,
    )
    desk = [
        CascadeStep(
            [SkillStep("intent"), SkillStep("intent_big", id="intent"), BlockStep("unsure")],
            threshold=[0.5, 0.5],
        ),
        RouteStep(
            {
                "faq": answer,
                **account_and_complaint(),
                "refund": SequenceStep(
                    [
                        SkillStep("entities"),
                        MergeStep(
                            {"order": "{entities.spans}", "note": "{intent.label}!"}, id="record"
                        ),
                        TemplateStep("Refund noted: {record.data}", id="reply"),
                    ]
                ),
                "cancel": ParallelStep(
                    [
                        SkillStep("sentiment"),
                        SequenceStep(
                            [SkillStep("summarizer", id="note"), EscalateStep("cancellation")]
                        ),
                    ]
                ),
            },
            EscalateStep("no queue", to="big", prompt="Answer briefly: {input}"),
            on="intent",
        ),
    ]
    return Workflow(
        [
            RouteStep(
                {"de": answer, "en": BlockStep("desk")},
                EscalateStep("language", to="big", system="Be kind."),
                skill="lang",
            )
        ],
        skills=skills,
        backends={"big": backend},
        blocks={"desk": desk, "unsure": [EscalateStep("intent unclear")]},
        name="everything",
        inbox=Inbox(f"sqlite:///{tmp / f'inbox-{tag}.db'}"),
        ledger=f"sqlite:///{tmp / f'ledger-{tag}.db'}",
    )


# --------------------------------------------------------------------------- doubles
def test_run_batch_equals_run_for_every_text_on_every_step_kind(tmp_path):
    made: dict[str, tuple[dict[str, Counting], FakeBackend]] = {}

    def make(tag: str) -> Workflow:
        made[tag] = doubles()
        return everything(*made[tag], tmp_path, tag)

    keys = [f"k{i}" for i in range(len(TEXTS))]
    batch, alone, batch_wf, alone_wf = run_both(make, TEXTS, keys)
    assert_same_results(batch, alone)
    statuses = {r.status for r in alone}
    routes = {tuple(r.route) for r in alone}
    assert statuses == {"completed", "escalated"} and len(routes) >= 10, "a varied test"
    assert_same_packets(batch_wf.inbox, alone_wf.inbox)
    humans = [r for r in batch if r.escalation and r.escalation.to == "human"]
    assert batch_wf.inbox.count() == len(humans) == 6
    assert [r.escalation.packet_id for r in humans] == list(range(1, 7))
    assert [p.key for p in batch_wf.inbox.list()] == [
        keys[i] for i, r in enumerate(batch) if r.escalation and r.escalation.to == "human"
    ]
    assert batch_wf.ledger is not None and alone_wf.ledger is not None
    assert_same_ledger(batch_wf.ledger, alone_wf.ledger)
    llm_batch, llm_alone = made["batch"][1].requests, made["alone"][1].requests
    # The same requests; a batch asks in branch order, not input order.
    assert sorted(map(repr, llm_batch)) == sorted(map(repr, llm_alone))
    assert len(llm_batch) == 2


def test_each_skill_predicts_once_per_group(tmp_path):
    skills, backend = doubles()
    everything(skills, backend, tmp_path, "b").run_batch(TEXTS)
    live = [t for t in TEXTS if t.strip()]
    english = [t for t in live if not t.startswith(("de ", "fr "))]
    assert skills["lang"].calls == [live]
    assert skills["intent"].calls == [english]
    assert skills["intent_big"].calls == [["maybe a refund", "maybe nothing at all"]], (
        "only the texts tier 1 was unsure of go on to tier 2"
    )
    # One call per branch that uses a skill: the German FAQ and the English FAQ.
    assert skills["answerer"].calls == [
        ["de faq Versand", "de faq Versand?"],
        ["faq opening hours", "faq do you ship abroad?", "faq opening hours"],
    ]
    complaints = [t for t in english if t.startswith("complaint")]
    refunds = ["refund for ORD-1 please", "maybe a refund"]
    accounts = [t for t in english if t.startswith("account")]
    assert skills["entities"].calls == [accounts, complaints, refunds]
    assert sorted(map(len, skills["sentiment"].calls)) == [1, 2]  # cancel, complaints
    assert sum(map(len, skills["summarizer"].calls)) == 3
    assert len(skills["summarizer"].calls) == 2


def test_parallel_branches_each_run_once_on_the_whole_batch():
    a = Counting(Fixed(Prediction(label="x", confidence=0.7)))
    b = Counting(Tagger({"ORD-1": "ORDER"}))
    wf = Workflow(
        [ParallelStep([SkillStep("a"), SkillStep("b")], id="both")], skills={"a": a, "b": b}
    )
    texts = ["one ORD-1", "two", "three ORD-1"]
    results = wf.run_batch(texts)
    assert a.calls == [texts] and b.calls == [texts]
    assert [r.output.data["b"].get("spans", []) != [] for r in results] == [True, False, True]
    assert [r.output.confidence for r in results] == pytest.approx([0.7, 0.7, 0.7])


def test_batch_latency_is_each_texts_share():
    def slow() -> Fixed:
        return Fixed(Prediction(label="x", confidence=0.9), sleep=0.2)

    wf = Workflow(
        [SkillStep("first"), ParallelStep([SkillStep("left"), SkillStep("right")])],
        skills={"first": slow(), "left": slow(), "right": slow()},
    )
    start = time.perf_counter()
    results = wf.run_batch(["a", "b", "c", "d"])
    wall_ms = (time.perf_counter() - start) * 1000
    skill = [r.trace[0].latency_ms for r in results]
    assert all(45 <= ms <= 75 for ms in skill), f"a quarter of one 0.2 s call each: {skill}"
    for r in results:
        parallel = r.trace[1]
        assert parallel.latency_ms >= max(c.latency_ms for c in parallel.children)
        assert parallel.latency_ms < 0.75 * sum(c.latency_ms for c in parallel.children), (
            "branches overlap: a text's parallel latency is its slowest branch's"
        )
        assert r.latency_ms >= sum(t.latency_ms for t in r.trace)
    assert sum(r.latency_ms for r in results) == pytest.approx(wall_ms, rel=0.1)


def test_a_per_text_call_in_a_batch_keeps_its_own_latency_and_cost():
    # An LLM escalation calls the backend once per text: each text's row must carry its own
    # call's time (a self-hosted LLM is priced by it, and a server bills it per API key),
    # as in run, not an equal share of the batch's calls.
    class Slow(FakeBackend):
        def complete(self, request):
            time.sleep(0.3 if "slow" in request.messages[-1].content else 0.0)
            return super().complete(request)

    wf = Workflow([EscalateStep("big q", to="big")], skills={}, backends={"big": Slow()},
                  prices={})  # fmt: skip
    slow, fast = wf.run_batch(["slow question", "fast question"])
    assert slow.trace[0].latency_ms >= 290, slow.trace[0].latency_ms
    assert fast.trace[0].latency_ms < 100, fast.trace[0].latency_ms
    at = datetime.now(UTC)
    cost = [wf.meter().rows(r, "k", at)[-1].cost_nusd for r in (slow, fast)]
    assert cost[0] > 3 * cost[1], cost


def test_a_batch_needs_texts_and_one_key_per_text():
    wf = Workflow([TemplateStep("x")], skills={})
    assert wf.run_batch([]) == []
    with pytest.raises(DataError, match="got one str; pass \\[text\\]"):
        wf.run_batch("one text")
    with pytest.raises(DataError, match="item 1 is a int"):
        wf.run_batch(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(DataError, match="2 texts, 1 keys"):
        wf.run_batch(["a", "b"], keys=["k"])
    with pytest.raises(DataError, match="callers must hold one caller .*2 texts, 3 callers"):
        wf.run_batch(["a", "b"], callers=["ana", "ben", "cy"])


def test_a_skill_returning_too_few_predictions_is_named():
    class Short:
        def predict(self, texts: Sequence[str]) -> list[Prediction]:
            return [Prediction(label="x")]

    wf = Workflow([SkillStep("short")], skills={"short": Short()})
    assert wf.run_batch(["one"])[0].output.label == "x"
    with pytest.raises(SkillError, match="skill 'short' returned 1 predictions for 2 texts"):
        wf.run_batch(["one", "two"])


# --------------------------------------------------------------------------- file runs
def _unsure_wf(skill: Any, tmp: Path, ledger: Ledger | None = None, tag: str = "") -> Workflow:
    return Workflow(
        [
            CascadeStep([SkillStep("intent"), EscalateStep("unsure")], threshold=0.5),
            TemplateStep("answer to {input}"),
        ],
        skills={"intent": skill},
        inbox=Inbox(f"sqlite:///{tmp / f'inbox{tag}.db'}"),
        ledger=ledger,
    )


FILE_TEXTS = [f"faq question {i}" if i % 3 else f"unclear {i}" for i in range(10)]


def test_file_runs_go_in_chunks_and_resume_after_an_interrupted_chunk(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(FILE_TEXTS) + "\n")
    out = tmp_path / "out.jsonl"
    inner = KeywordClassifier({"faq": 0.9})
    calls = Counting(inner)
    flaky = Raising(calls, fail_on=2, exc=KeyboardInterrupt)  # the second chunk fails
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    with pytest.raises(KeyboardInterrupt):
        run_batch(_unsure_wf(flaky, tmp_path, ledger), src, out, chunk_size=4)
    assert [json.loads(x)["row"] for x in out.read_text().splitlines()] == [0, 1, 2, 3]
    assert calls.calls == [FILE_TEXTS[:4]]
    wf = _unsure_wf(calls, tmp_path, ledger)
    inbox = wf.inbox
    assert inbox.count() == 2  # rows 0 and 3
    summary = run_batch(wf, src, out, chunk_size=4)
    assert (summary.already_done, summary.processed) == (4, 6)
    assert calls.calls[1:] == [FILE_TEXTS[4:8], FILE_TEXTS[8:]], (
        "chunks of 4 from the first missing row"
    )
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["row"] for r in got] == list(range(10))
    assert [r["input"] for r in got] == FILE_TEXTS
    assert inbox.count() == sum(r["status"] == "escalated" for r in got) == 4
    # --restart is a new run of the same texts: the work is done (and paid) again, so it
    # files its own packets and ledger rows; only resuming never does anything twice.
    before = ledger.rows()
    assert len({r.request_id for r in before}) == 10
    run_batch(wf, src, out, chunk_size=3, restart=True)
    assert inbox.count() == 8 and len(ledger.rows()) == 2 * len(before)
    same = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["row"], r["status"], r["answer"]) for r in same] == [
        (r["row"], r["status"], r["answer"]) for r in got
    ]


def test_file_run_rows_equal_single_runs_and_chunk_size_is_checked(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(FILE_TEXTS) + "\n")
    intent = Counting(KeywordClassifier({"faq": 0.9}))
    wf = _unsure_wf(intent, tmp_path, tag="-batch")
    run_batch(wf, src, tmp_path / "out.jsonl", trace=True)
    assert intent.calls == [FILE_TEXTS], "one chunk (64 texts by default): one predict call"
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    alone = _unsure_wf(KeywordClassifier({"faq": 0.9}), tmp_path, tag="-alone")
    want = [{"row": i, **alone.run(t).to_dict()} for i, t in enumerate(FILE_TEXTS)]
    assert_close(no_latency(rows), no_latency(want))
    with pytest.raises(ConfigError, match="chunk_size must be at least 1; got 0"):
        run_batch(wf, src, tmp_path / "o2.jsonl", chunk_size=0)


def _llm_wf(llm: FlakyBackend, tmp: Path) -> Workflow:
    """Texts the classifier is unsure of (all but "faq ...") go to the LLM."""
    return Workflow(
        [CascadeStep([SkillStep("intent"), EscalateStep("unsure", to="llm")], threshold=0.5)],
        skills={"intent": KeywordClassifier({"faq": 0.9})},
        backends={"llm": llm},
        ledger=Ledger(f"sqlite:///{tmp / 'ledger.db'}"),
    )


def test_a_failed_batch_keeps_its_paid_llm_answers_for_the_next_run(tmp_path):
    # An LLM escalation that timed out on text 4 of 6 sank the batch: the 3 answers before
    # it were paid but recorded nowhere, and running the texts again asked (paid) again.
    llm = FlakyBackend(fail_on=4)
    wf = _llm_wf(llm, tmp_path)
    texts = [f"unclear {i}" for i in range(6)]
    with pytest.raises(Exception, match="timed out on call 4"):
        wf.run_batch(texts, keys=[f"k{i}" for i in range(6)])
    assert llm.calls == 4 and wf.ledger is not None and wf.ledger.rows() == []
    # Row by row (the batch job's retry): the 3 answered take their kept answer.
    alone = [wf.run(t, key=f"k{i}") for i, t in enumerate(texts)]
    assert llm.calls == 4 + 3, "only the failed text and the 2 never asked call the LLM"
    assert [r.answer for r in alone] == ["LLM answer"] * 6
    rows = wf.ledger.rows()
    escalations = [r for r in rows if r.kind == "escalate"]
    assert len(escalations) == 6 and {(r.tokens_in, r.tokens_out) for r in escalations} == {(11, 4)}
    # A batch that succeeds drops what is left: the same texts are asked again.
    wf.run_batch(texts[:2])
    assert llm.calls == 9
    # And a batch run again after a failure takes the kept answers too.
    llm.fail_on = 12
    with pytest.raises(Exception, match="timed out on call 12"):
        wf.run_batch(texts)
    wf.run_batch(texts)
    assert llm.calls == 12 + 4


def test_a_file_run_keeps_the_rows_before_a_failed_llm_call_and_pays_them_once(tmp_path):
    src = tmp_path / "in.txt"
    texts = ["unclear 0", "faq 1", "unclear 2", "bad 3", "unclear 4", "unclear 5"]
    src.write_text("\n".join(texts) + "\n")
    out = tmp_path / "out.jsonl"
    llm = FlakyBackend(fail_word="bad")
    wf = _llm_wf(llm, tmp_path)
    with pytest.raises(Exception, match="timed out"):
        run_batch(wf, src, out, chunk_size=6)
    # The chunk ran again text by text: the rows before "bad 3" are written, from the
    # answers the chunk paid for; "bad 3" was asked twice and stopped the run.
    assert [json.loads(x)["row"] for x in out.read_text().splitlines()] == [0, 1, 2]
    assert llm.calls == 3 + 1
    llm.fail_word = None  # the service is back: resume at row 3
    summary = run_batch(wf, src, out, chunk_size=6)
    assert (summary.already_done, summary.processed) == (3, 3)
    assert llm.calls == 4 + 3
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["row"] for r in got] == list(range(6))
    assert wf.ledger is not None
    runs = [r.request_id for r in wf.ledger.rows() if r.kind == "run"]
    assert len(runs) == len(set(runs)) == 6
