"""``Workflow.run_batch``: each step once per batch, and for every text what ``run`` gives."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from example_skills import needs_lora, quick_desk_summarizer
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
    Result,
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
    KeywordClassifier,
    Raising,
    Tagger,
    account_and_complaint,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


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


# --------------------------------------------------------------------------- comparing
def _no_latency(value: Any) -> Any:
    """``value`` with every ``latency_ms`` left out (a batch shares its time out)."""
    if isinstance(value, dict):
        return {k: _no_latency(v) for k, v in value.items() if k != "latency_ms"}
    if isinstance(value, list):
        return [_no_latency(v) for v in value]
    return value


def assert_close(got: Any, want: Any, where: str = "") -> None:
    """Equal, with floats to 1e-5: a padded batch moves an encoder's scores by ~1e-7."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for key in want:
            assert_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list | tuple):
        assert isinstance(got, list | tuple) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert got == pytest.approx(want, abs=1e-5), where
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def assert_same_results(batch: list[Result], alone: list[Result]) -> None:
    """Outputs, status, escalation, route, decisions and trace shape match, per text."""
    assert len(batch) == len(alone)
    for i, (b, a) in enumerate(zip(batch, alone, strict=True)):
        where = f"text {i} ({a.input!r})"
        assert (b.input, b.status, b.route) == (a.input, a.status, a.route), where
        if a.output.text is not None or a.output.label is not None:
            assert b.answer == a.answer, where  # else the answer prints data: compared below
        assert b.escalation == a.escalation, where  # reason, why and packet id
        decisions = [[t.decision for t in root.walk()] for root in b.trace]
        want = [[t.decision for t in root.walk()] for root in a.trace]
        assert_close(
            [[d and d.to_dict() for d in ds] for ds in decisions],
            [[d and d.to_dict() for d in ds] for ds in want],
            f"{where} decisions",
        )
        b_view, a_view = _no_latency(b.to_dict()), _no_latency(a.to_dict())
        del b_view["answer"], a_view["answer"]  # floats printed in full, for data outputs
        assert_close(b_view, a_view, where)


def assert_same_packets(batch: Inbox, alone: Inbox) -> None:
    """The same packets (one per escalated text, same keys), in the same order."""
    got, want = batch.list(), alone.list()
    assert len(got) == len(want)
    for b, a in zip(got, want, strict=True):
        drop = {"created_at", "trace"}
        b_dict = {k: v for k, v in b.to_dict().items() if k not in drop}
        a_dict = {k: v for k, v in a.to_dict().items() if k not in drop}
        assert_close(b_dict, a_dict, f"packet {a.id}")
        assert_close(_no_latency(b.to_dict()["trace"]), _no_latency(a.to_dict()["trace"]))


# Timing fields: a batch's time is shared out, so these differ (tokens and decisions do not).
_TIMED = {"at", "latency_ms", "compute_s"}


def assert_same_ledger(batch: Ledger, alone: Ledger) -> None:
    """The same rows per request: steps, models, tokens, decisions, per-token costs."""

    def view(ledger: Ledger) -> list[dict[str, Any]]:
        out = []
        for row in ledger.rows():
            data = {k: v for k, v in vars(row).items() if k not in _TIMED}
            if row.machine is not None or row.kind == "run":
                data.pop("cost_nusd")  # priced by time (the run: partly): a share of the batch
            out.append(data)
        return sorted(out, key=lambda r: (r["request_id"], r["path"]))

    got, want = view(batch), view(alone)
    assert got and got == want


def run_both(
    make: Any, texts: Sequence[str], keys: Sequence[str]
) -> tuple[list[Result], list[Result], Workflow, Workflow]:
    """Run ``texts`` one at a time on one workflow and as a batch on another."""
    alone_wf, batch_wf = make("alone"), make("batch")
    alone = [alone_wf.run(t, key=k) for t, k in zip(texts, keys, strict=True)]
    batch = batch_wf.run_batch(texts, keys=keys)
    return batch, alone, batch_wf, alone_wf


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


def test_a_batch_needs_texts_and_one_key_per_text():
    wf = Workflow([TemplateStep("x")], skills={})
    assert wf.run_batch([]) == []
    with pytest.raises(DataError, match="got one str; pass \\[text\\]"):
        wf.run_batch("one text")
    with pytest.raises(DataError, match="item 1 is a int"):
        wf.run_batch(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(DataError, match="2 texts, 1 keys"):
        wf.run_batch(["a", "b"], keys=["k"])


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
    # A rerun with --restart files no second packet and no second ledger rows.
    before = ledger.rows()
    assert len({r.request_id for r in before}) == 10
    run_batch(wf, src, out, chunk_size=3, restart=True)
    assert inbox.count() == 4 and len(ledger.rows()) == len(before)
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
    assert_close(_no_latency(rows), _no_latency(want))
    with pytest.raises(ConfigError, match="chunk_size must be at least 1; got 0"):
        run_batch(wf, src, tmp_path / "o2.jsonl", chunk_size=0)


# --------------------------------------------------------------------------- examples
def _example_texts(example: str) -> list[str]:
    data = EXAMPLES / example / "data"
    if example == "support-desk":
        lines = (data / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(x)["text"] for x in lines if x.strip()]
    if example == "feedback-analysis":
        with (data / "reviews.csv").open(newline="", encoding="utf-8") as f:
            return [r["text"] for r in csv.DictReader(f)]
    return [p.read_text(encoding="utf-8") for p in sorted((data / "invoices").glob("*.txt"))]


@pytest.mark.slow
@pytest.mark.parametrize("example", ["support-desk", "feedback-analysis", "invoices"])
def test_run_batch_equals_run_on_the_examples(example, tmp_path):
    if example != "invoices":
        pytest.importorskip("llama_cpp", reason="this example generates with SmolLM2")
    from slmstack.workflows import load_workflow

    # The example's own cache: trained once (as run.py does), then loaded; the support
    # desk's LoRA summarizer is trained for seconds instead (tests/example_skills.py).
    given = {}
    if example == "support-desk":
        needs_lora()
        given["summarizer"] = quick_desk_summarizer()
    loaded = load_workflow(
        EXAMPLES / example / "workflow.yaml",
        cache_dir=EXAMPLES / example / ".slmstack-cache",
        skills=given,
    )

    def make(tag: str) -> Workflow:
        return Workflow(
            loaded.steps, skills=loaded.skills, name=loaded.name, backends=loaded.backends,
            blocks=loaded.blocks, inbox=Inbox(f"sqlite:///{tmp_path / f'inbox-{tag}.db'}"),
            ledger=f"sqlite:///{tmp_path / f'ledger-{tag}.db'}", prices=loaded.meter().prices,
        )  # fmt: skip

    texts = _example_texts(example)
    keys = [f"{example}#{i}" for i in range(len(texts))]
    batch, alone, batch_wf, alone_wf = run_both(make, texts, keys)
    assert_same_results(batch, alone)
    assert_same_packets(batch_wf.inbox, alone_wf.inbox)
    assert batch_wf.inbox.count() == sum(
        r.escalation is not None and r.escalation.to == "human" for r in batch
    )
    assert batch_wf.ledger is not None and alone_wf.ledger is not None
    assert_same_ledger(batch_wf.ledger, alone_wf.ledger)
