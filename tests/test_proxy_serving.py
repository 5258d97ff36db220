"""Serving promoted tasks: the student answers on the request path, cascades, audits, demotes."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from proxy_doubles import FakeUpstream, client, make_proxy
from slmstack.cli.app import app
from slmstack.costs import Ledger
from slmstack.errors import ConfigError, DataError
from slmstack.proxy import Masker, ProxyConfig, TrafficStore, create_proxy_app, generate_key
from slmstack.proxy.promote import (
    Promotion,
    ShadowStore,
    choose_threshold,
    promote,
    wilson_lower,
    wilson_upper,
)
from slmstack.proxy.serving import Serving
from slmstack.proxy.shadow import Shadow, ShadowRow, ShadowTask
from slmstack.types import Prediction

PREFIX, SUFFIX = "Classify: card_arrival, refund.\nQuery: ", "\nIntent:"


class Student:
    """Says ``label`` (or card_arrival / refund by the words) at ``confidence``; may wait."""

    def __init__(self, confidence=0.9, label=None, gate: threading.Event | None = None):
        self.confidence = confidence
        self.label = label
        self.gate = gate
        self.batches: list[list[str]] = []

    def predict(self, texts):
        self.batches.append(list(texts))
        if self.gate is not None:
            assert self.gate.wait(5)
        return [
            Prediction(
                label=self.label or ("refund" if "money" in t else "card_arrival"),
                confidence=self.confidence,
            )
            for t in texts
        ]


def body(query="where is my card", **extra):
    return {"model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": PREFIX + query + SUFFIX}], **extra}  # fmt: skip


def promoted(task_id="t-bank", threshold=0.5, at=None):
    return Promotion(task_id, at or datetime.now(UTC), True, 100, 99, 0.95, 0.9, 0.95, "test",
                     threshold, 0.8)  # fmt: skip


def setup(tmp_path, student, upstream=None, *, kind="classification", promote_now=True,
          count_tokens=None, masker=None, **serving):  # fmt: skip
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    store = ShadowStore(url)
    if promote_now:
        store.record(promoted())
    task = ShadowTask("t-bank", kind, "", PREFIX, SUFFIX, student)
    upstream = upstream or FakeUpstream(lambda text: "card_arrival")
    serving.setdefault("audit_rate", 0.0)  # no audits unless a test asks (they are sampled)
    served = Serving([task], store, count_tokens=count_tokens, **serving)
    shadow = Shadow([task], serving.get("templates", ()))
    proxy = make_proxy(tmp_path, upstream, shadow=shadow, shadow_store=store,
                       serving=served, count_tokens=count_tokens, masker=masker)  # fmt: skip
    return proxy, upstream, store, url


def shadow_rows(url):
    with sa.create_engine(url).connect() as conn:
        query = "select kind, agree, student_answer from slmstack_shadow order by id"
        return [tuple(r) for r in conn.execute(sa.text(query))]


def test_threshold_is_the_lowest_whose_bound_reaches_the_bar():
    calls = [(0.95, True)] * 100 + [(0.7, True)] * 90 + [(0.7, False)] * 10
    calls += [(0.3, True)] * 30 + [(0.3, False)] * 70
    chosen, _ = choose_threshold(calls, min_agreement=0.9, min_n_above=50)
    assert chosen is not None and chosen.threshold == 0.7
    assert (chosen.n, chosen.agreed) == (200, 190) and chosen.coverage == pytest.approx(2 / 3)
    assert chosen.lower_bound == pytest.approx(wilson_lower(190, 200))
    assert chosen.lower_bound >= 0.9
    # a threshold with too few calls above it never passes, however well they agree
    few = [(0.99, True)] * 30 + [(0.5, False)] * 70
    assert choose_threshold(few, min_agreement=0.9, min_n_above=50)[0] is None
    assert choose_threshold(few, min_agreement=0.9, min_n_above=30)[0].threshold == 0.99
    # not monotone: a dip in the middle does not hide a lower threshold that passes
    dip = [(0.9, True)] * 60 + [(0.8, False)] * 5 + [(0.6, True)] * 200
    assert choose_threshold(dip, min_agreement=0.9, min_n_above=50)[0].threshold == 0.6
    assert wilson_upper(0, 5) < 0.9 < wilson_upper(4, 5)
    assert wilson_upper(3, 10) == pytest.approx(1 - wilson_lower(7, 10))


def test_promote_stores_threshold_and_coverage_and_the_cli_prints_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    store = ShadowStore(url)
    at = datetime.now(UTC)
    rows = [(0.95, True)] * 150 + [(0.4, False)] * 50
    store.insert(ShadowRow(f"r{i}", "t-bank", at, float(a), a, "x", "y", c, 1.0)
                 for i, (c, a) in enumerate(rows))  # fmt: skip
    store.insert([ShadowRow("c1", "t-bank", at, 0.0, False, "x", "y", 0.99, 1.0, "cascade")])
    decision = promote(store, "t-bank", min_n=100, min_n_above=100, min_agreement=0.9)
    assert decision.promoted and decision.threshold == 0.95
    assert decision.coverage == pytest.approx(0.75)  # the cascade row is not weighed
    assert store.latest()["t-bank"] == decision
    refused = promote(store, "t-bank", min_n=100, min_n_above=160, min_agreement=0.9)
    assert not refused.promoted and refused.threshold is None and "no threshold" in refused.reason

    runner = CliRunner()
    result = runner.invoke(app, ["promote", "--task", "t-bank", "--ledger", url, "--min-n", "100",
                                 "--min-n-above", "100"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "threshold 0.950" in result.output and "coverage 75.0%" in result.output
    result = runner.invoke(app, ["promote", "--task", "t-bank", "--ledger", url, "--demote"])
    assert result.exit_code == 0 and not store.promoted("t-bank")
    assert store.latest()["t-bank"].reason.startswith("demoted: by the operator")
    # the evidence from before the demotion is what failed in service: it no longer counts
    again = promote(store, "t-bank", min_n=100, min_n_above=100, min_agreement=0.9)
    assert not again.promoted and "0 shadowed calls since its demotion at" in again.reason
    later = datetime.now(UTC)
    store.insert(ShadowRow(f"n{i}", "t-bank", later, float(a), a, "x", "y", c, 1.0)
                 for i, (c, a) in enumerate(rows))  # fmt: skip
    assert promote(store, "t-bank", min_n=100, min_n_above=100, min_agreement=0.9).promoted
    typo = runner.invoke(app, ["promote", "--task", "t-bnak", "--ledger", url, "--demote"])
    assert typo.exit_code == 2 and "no task 't-bnak'" in typo.output
    assert "did you mean 't-bank'" in typo.output and "t-bnak" not in store.task_ids()
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    ShadowStore(empty)
    none = runner.invoke(app, ["promote", "--task", "t-bank", "--ledger", empty])
    assert none.exit_code == 2 and "--shadow t-bank=DIR" in " ".join(none.output.split())


def test_a_promoted_task_is_answered_by_its_student_json_and_stream(tmp_path):
    student = Student(confidence=0.9)
    proxy, upstream, _, url = setup(tmp_path, student, count_tokens=lambda t: len(t.split()))

    async def main():
        async with proxy, client(proxy) as http:
            r = await http.post("/v1/chat/completions", json=body(model="my-app-model"))
            stream = body("send my money back", stream=True,
                          stream_options={"include_usage": True})  # fmt: skip
            async with http.stream("POST", "/v1/chat/completions", json=stream) as s:
                raw = b"".join([c async for c in s.aiter_raw()])
                streamed = s.headers
            other = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
            o = await http.post("/v1/chat/completions", json=other)
            assert proxy.recorder.wait_idle()
            return r, raw, streamed, o

    r, raw, streamed, o = asyncio.run(main())
    assert r.status_code == 200 and r.headers["x-slmstack-answered-by"] == "student"
    data = r.json()
    assert data["object"] == "chat.completion" and data["model"] == "my-app-model"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "card_arrival"}
    assert data["usage"]["completion_tokens"] == 1 and data["usage"]["prompt_tokens"] > 5
    assert streamed["x-slmstack-answered-by"] == "student"
    assert streamed["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in raw.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == (
        "refund"
    )
    assert chunks[-1]["usage"]["completion_tokens"] == 1
    assert o.headers["x-slmstack-answered-by"] == "llm"
    assert len(upstream.received) == 1  # only the call that is no task's reached the LLM

    rows = TrafficStore(url).rows()
    assert [(t.answered_by, t.task_id) for t in rows] == [
        ("student", "t-bank"), ("student", "t-bank"), ("llm", None)]  # fmt: skip
    assert rows[1].stream and rows[1].response == "refund"
    assert rows[0].cost_nusd == 0 and rows[0].tokens_source == "counted" and rows[0].latency_ms > 0
    ledger = {r.request_id: r for r in Ledger(url).rows()}
    first = ledger[rows[0].request_id]
    assert (first.kind, first.model, first.cost_nusd) == ("student", "student:t-bank", 0)
    assert "threshold 0.500" in first.reason
    assert shadow_rows(url) == []  # a student's own answer is not compared with itself


def test_extraction_answers_the_json_object_and_no_tokenizer_means_no_usage(tmp_path):
    class Reader:
        def predict(self, texts):
            return [Prediction(data={"total": "9.00", "date": "01/02/2018"}, confidence=0.99)
                    for _ in texts]  # fmt: skip

    proxy, upstream, _, url = setup(tmp_path, Reader(), kind="extraction")

    async def main():
        async with proxy, client(proxy) as http:
            r = await http.post("/v1/chat/completions", json=body("TOTAL 9.00"))
            assert proxy.recorder.wait_idle()
            return r

    r = asyncio.run(main())
    content = r.json()["choices"][0]["message"]["content"]
    assert json.loads(content) == {"total": "9.00", "date": "01/02/2018"}
    assert "usage" not in r.json() and not upstream.received
    [row] = TrafficStore(url).rows()
    assert (row.answered_by, row.tokens_source, row.cost_nusd) == ("student", "missing", 0)


def test_the_students_answers_are_masked_like_all_traffic(tmp_path):
    class Echo:
        def predict(self, texts):
            return [Prediction(text=f"mail {t}", confidence=0.99) for t in texts]

    proxy, _, _, url = setup(tmp_path, Echo(), kind="generation", masker=Masker(generate_key()),
                             audit_rate=1.0)  # fmt: skip

    async def main():
        async with proxy, client(proxy) as http:
            r = await http.post("/v1/chat/completions", json=body("ana@example.com"))
            return r.json()["choices"][0]["message"]["content"]

    assert asyncio.run(main()) == "mail ana@example.com"  # the client gets the clear answer
    [row] = TrafficStore(url).rows()
    assert row.masked and "ana@example.com" not in row.user + row.response + row.messages
    with sa.create_engine(url).connect() as conn:
        [(llm, student)] = conn.execute(sa.text("select llm_answer, student_answer "
                                                "from slmstack_shadow")).all()  # fmt: skip
    assert "ana@example.com" not in llm + student


def test_low_confidence_cascades_to_the_llm_and_is_compared_once(tmp_path):
    student = Student(confidence=0.3)
    proxy, upstream, _, url = setup(tmp_path, student)

    async def main():
        async with proxy, client(proxy) as http:
            r = await http.post("/v1/chat/completions", json=body("send my money back"))
            assert proxy.recorder.wait_idle()
            return r

    r = asyncio.run(main())
    assert r.headers["x-slmstack-answered-by"] == "llm" and r.json()["model"] == "gpt-4o-mini"
    assert len(upstream.received) == 1 and len(student.batches) == 1  # asked once, not twice
    [row] = TrafficStore(url).rows()
    assert (row.answered_by, row.task_id, row.response) == ("llm", "t-bank", "card_arrival")
    assert shadow_rows(url) == [("cascade", False, "refund")]
    [ledger] = Ledger(url).rows()
    assert "cascade of task t-bank: confidence 0.300 < threshold 0.500" in ledger.reason


def test_students_run_off_the_loop_in_batches(tmp_path):
    gate = threading.Event()
    student = Student(confidence=0.9, gate=gate)
    proxy, _, _, _ = setup(tmp_path, student)

    async def main():
        async with proxy, client(proxy) as http:
            first = asyncio.create_task(http.post("/v1/chat/completions", json=body("a")))
            await asyncio.sleep(0.05)  # the student is busy with the first call
            more = [asyncio.create_task(http.post("/v1/chat/completions", json=body(q)))
                    for q in ("b", "c")]  # fmt: skip
            other = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
            t0 = time.perf_counter()
            o = await http.post("/v1/chat/completions", json=other)  # not held up by the student
            waited = time.perf_counter() - t0
            gate.set()
            answers = [await first] + [await m for m in more]
            return o, waited, answers

    o, waited, answers = asyncio.run(main())
    assert o.status_code == 200 and waited < 1.0
    assert [a.headers["x-slmstack-answered-by"] for a in answers] == ["student"] * 3
    assert student.batches == [["a"], ["b", "c"]]


def test_a_promotion_made_after_start_is_picked_up(tmp_path):
    proxy, upstream, store, _ = setup(tmp_path, Student(), promote_now=False, refresh_s=0.05)

    async def main():
        async with proxy, client(proxy) as http:
            before = await http.post("/v1/chat/completions", json=body())
            store.record(promoted())  # as `slmstack promote` would, from another process
            await asyncio.sleep(0.3)
            after = await http.post("/v1/chat/completions", json=body())
            return before, after

    before, after = asyncio.run(main())
    assert before.headers["x-slmstack-answered-by"] == "llm"
    assert after.headers["x-slmstack-answered-by"] == "student"
    assert len(upstream.received) == 1


def test_an_audited_answer_is_asked_of_the_llm_in_the_background(tmp_path):
    upstream = FakeUpstream(lambda text: "card_arrival")
    proxy, _, store, url = setup(tmp_path, Student(), upstream, audit_rate=1.0)

    async def main():
        async with proxy, client(proxy) as http:
            stream = body(stream=True, stream_options={"include_usage": True})
            r = await http.post("/v1/chat/completions", json=stream)
            assert r.headers["x-slmstack-answered-by"] == "student"
        # leaving the block waits for the audits, then records them

    asyncio.run(main())
    [audit] = upstream.received
    sent = json.loads(audit["body"])
    assert "stream" not in sent and "stream_options" not in sent  # a plain answer to compare
    assert shadow_rows(url) == [("audit", True, "card_arrival")]
    assert store.calls("t-bank", window=10, kind="audit") == [(0.9, True)]
    [row] = TrafficStore(url).rows()  # the audit is no request of the app
    assert row.answered_by == "student"
    paths = sorted((r.path, r.kind) for r in Ledger(url).rows())
    assert paths == [("audit", "llm"), ("student", "student")]


def test_disagreeing_audits_demote_the_task_and_the_llm_answers_again(tmp_path):
    student = Student(confidence=0.9, label="refund")  # the LLM says card_arrival
    proxy, upstream, store, url = setup(tmp_path, student, audit_rate=1.0, demote_min_n=5,
                                        demote_window=10)  # fmt: skip

    async def main():
        async with proxy, client(proxy) as http:
            for i in range(5):
                r = await http.post("/v1/chat/completions", json=body(f"card {i}"))
                assert r.headers["x-slmstack-answered-by"] == "student"
            for _ in range(200):
                if not store.promoted("t-bank"):
                    break
                await asyncio.sleep(0.02)
            return await http.post("/v1/chat/completions", json=body("card 6"))

    after = asyncio.run(main())
    decision = store.latest()["t-bank"]
    assert not decision.promoted and decision.reason.startswith("demoted: the last 5 audits")
    assert (decision.n, decision.agreed) == (5, 0)
    assert after.headers["x-slmstack-answered-by"] == "llm"
    assert len(upstream.received) == 6  # five audits, then the call itself
    assert [k for k, *_ in shadow_rows(url)] == ["audit"] * 5 + ["shadow"]  # shadowed again


def test_audits_of_an_earlier_promotion_do_not_demote_a_new_one(tmp_path):
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    store = ShadowStore(url)
    old = datetime(2020, 1, 1, tzinfo=UTC)
    store.insert(ShadowRow(f"r{i}", "t-bank", old, 0.0, False, "a", "b", 0.9, 1.0, "audit")
                 for i in range(10))  # fmt: skip
    store.record(promoted())
    serving = Serving([ShadowTask("t-bank", "classification", "", "", "", Student())], store,
                      demote_min_n=5)  # fmt: skip
    serving.audited([ShadowRow("x", "t-bank", old, 0.0, False, "a", "b", 0.9, 1.0, "audit")])
    assert store.promoted("t-bank") and serving.active


def test_promote_run_again_on_a_served_task_keeps_its_failing_audits(tmp_path):
    """A daily `slmstack promote` on a served task re-decides its threshold; the audits
    since the spell began still count (they were forgotten at each re-run, so a student
    failing its audits slower than demote_min_n a day was never demoted)."""
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    store = ShadowStore(url)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def audits(minute, n):
        at = t0 + timedelta(minutes=minute)
        return [ShadowRow(f"r{minute}-{i}", "t-bank", at, 0.0, False, "a", "b", 0.9, 1.0, "audit")
                for i in range(n)]  # fmt: skip

    store.record(promoted(at=t0))
    store.insert(audits(1, 4))
    store.record(promoted(at=t0 + timedelta(minutes=2)))  # promote run again
    assert store.promoted_since("t-bank") == t0
    serving = Serving([ShadowTask("t-bank", "classification", "", "", "", Student())], store,
                      demote_min_n=5)  # fmt: skip
    last = audits(3, 1)
    store.insert(last)
    serving.audited(last)
    decision = store.latest()["t-bank"]
    assert not decision.promoted and (decision.n, decision.agreed) == (5, 0)
    assert decision.reason.startswith("demoted: the last 5 audits since the promotion at 2026-01-01T00:00")
    assert store.promoted_since("t-bank") is None
    store.record(promoted(at=t0 + timedelta(minutes=9)))  # promoted again after the demotion
    assert store.promoted_since("t-bank") == t0 + timedelta(minutes=9)


def test_a_promoted_task_without_its_student_is_refused_at_start(tmp_path):
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    ShadowStore(url).record(promoted())
    with pytest.raises(ConfigError, match="--shadow t-bank=STUDENT_DIR"):
        create_proxy_app(ProxyConfig(upstream="http://upstream.test/v1", ledger=url))
    other = ShadowTask("t-other", "classification", "", "", "", Student())
    with pytest.raises(ConfigError, match="slmstack promote --task t-bank --demote"):
        Serving([other], ShadowStore(url))
    with pytest.raises(ValueError, match="demote_min_n"):
        ProxyConfig(upstream="http://u.test/v1", demote_min_n=300)


def test_tables_of_an_older_version_gain_the_new_columns(tmp_path):
    """Handled, not refused: the new columns are nullable or defaulted, so they are added."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    TrafficStore(url)
    ShadowStore(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table, column in [("slmstack_traffic", "answered_by"), ("slmstack_traffic", "task_id"),
                              ("slmstack_shadow", "kind"), ("slmstack_promotions", "threshold"),
                              ("slmstack_promotions", "coverage")]:  # fmt: skip
            conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(sa.text(
            "INSERT INTO slmstack_shadow (request_id, task_id, at, score, agree, llm_answer, "
            "student_answer, student_confidence, student_ms) VALUES "
            "('r1', 't-bank', '2026-01-01 00:00:00', 1, 1, 'a', 'a', 0.8, 1)"
        ))  # fmt: skip
        conn.execute(sa.text(
            "INSERT INTO slmstack_promotions (task_id, at, promoted, n, agreed, lower_bound, "
            "min_agreement, confidence, reason) VALUES "
            "('t-bank', '2026-01-01 00:00:00', 1, 1, 1, 0.9, 0.9, 0.95, 'old')"
        ))  # fmt: skip
    store = ShadowStore(url, create=False)
    assert store.calls("t-bank", window=5) == [(0.8, True)]  # the old row is a shadow row
    assert store.latest()["t-bank"].threshold is None  # promoted before thresholds: not served
    serving = Serving([ShadowTask("t-bank", "classification", "", "", "", Student())], store)
    assert not serving.active
    TrafficStore(url, create=False)
    columns = {c["name"] for c in sa.inspect(sa.create_engine(url)).get_columns("slmstack_traffic")}
    assert {"answered_by", "task_id"} <= columns


def test_audit_sampling_takes_the_configured_share_and_is_the_same_for_an_id(tmp_path):
    store = ShadowStore(f"sqlite:///{tmp_path / 'proxy.db'}")
    task = ShadowTask("t-bank", "classification", "", PREFIX, SUFFIX, None)
    ids = [f"req-{i}" for i in range(4000)]
    for rate in (0.05, 0.3):
        served = Serving([task], store, audit_rate=rate)
        picked = [served._sampled(i) for i in ids]
        assert abs(sum(picked) / len(ids) - rate) < 0.025  # binomial sd at 4000: <= 0.0073
        assert picked == [served._sampled(i) for i in ids]  # a retry is audited, or not, again
    # a larger rate audits a superset: raising the rate never drops a call that was audited
    low, high = Serving([task], store, audit_rate=0.05), Serving([task], store, audit_rate=0.3)
    assert all(high._sampled(i) for i in ids if low._sampled(i))


def test_a_call_of_a_more_specific_task_is_never_answered_by_this_tasks_student(tmp_path):
    """Two tasks share a prompt's start and end; the one with more fixed text owns its calls."""
    urgent = "\nIs it urgent? Answer yes or no, then the intent.\nIntent:"
    other = ShadowTask("t-urgent", "classification", "", PREFIX, urgent, None)
    student = Student(confidence=0.99)
    proxy, upstream, _, url = setup(tmp_path, student, templates=[other])

    async def main():
        async with proxy, client(proxy) as http:
            mine = await http.post("/v1/chat/completions", json=body("where is my card"))
            theirs = {"model": "gpt-4o-mini",
                      "messages": [{"role": "user", "content": PREFIX + "card lost" + urgent}]}  # fmt: skip
            r = await http.post("/v1/chat/completions", json=theirs)
            assert proxy.recorder.wait_idle()
            return mine, r

    mine, r = asyncio.run(main())
    assert mine.headers["x-slmstack-answered-by"] == "student"
    assert r.headers["x-slmstack-answered-by"] == "llm" and len(upstream.received) == 1
    assert student.batches == [["where is my card"]]  # the urgent call never reached it
    # and the routing task's training data leaves the other task's calls out
    from slmstack.proxy.taskdata import RecordedTask, task_data

    task = RecordedTask("t-bank", "classification", "", PREFIX, SUFFIX, ("card_arrival",), ())
    rows = TrafficStore(url).rows()
    assert task_data(rows, task).calls == 2  # a template alone matches both
    with pytest.raises(DataError, match="none of the 1 calls of task t-bank"):
        task_data(rows, task, others=[other])  # its one call was the student's own answer


def test_a_call_with_no_text_in_the_template_goes_to_the_llm_and_is_not_compared(tmp_path):
    """Distillation drops blank variable parts: the student never learnt them."""
    student = Student(confidence=0.99)
    proxy, upstream, _, url = setup(tmp_path, student)

    async def main():
        async with proxy, client(proxy) as http:
            blank = await http.post("/v1/chat/completions", json=body("  \n "))
            assert proxy.recorder.wait_idle()
            return blank

    blank = asyncio.run(main())
    assert blank.headers["x-slmstack-answered-by"] == "llm" and len(upstream.received) == 1
    assert student.batches == []  # neither served nor shadowed on a text it never saw
    assert shadow_rows(url) == []


def test_a_malformed_stream_options_reaches_the_llm_not_a_crash(tmp_path):
    """The student's stream would read it; the LLM answers such a request with its own 400."""
    proxy, upstream, _, url = setup(tmp_path, Student(), FakeUpstream(status=400))

    async def main():
        async with proxy, client(proxy) as http:
            bad = body(stream=True, stream_options="include_usage")
            r = await http.post("/v1/chat/completions", json=bad)
            assert proxy.recorder.wait_idle()
            return r

    r = asyncio.run(main())
    assert r.status_code == 400 and r.headers["x-slmstack-answered-by"] == "llm"
    assert len(upstream.received) == 1
    [row] = TrafficStore(url).rows()
    assert (row.status, row.answered_by) == (400, "llm")


def test_a_stream_flag_that_is_not_a_boolean_reaches_the_llm(tmp_path):
    """``"stream": "false"`` is truthy in Python: the student would answer a stream to a
    client that may expect one JSON body. The LLM refuses or reads it as it does."""
    student = Student(confidence=0.99)
    proxy, upstream, _, _ = setup(tmp_path, student, FakeUpstream(status=400))

    async def main():
        async with proxy, client(proxy) as http:
            r = await http.post("/v1/chat/completions", json=body(stream="false"))
            assert proxy.recorder.wait_idle()
            return r

    r = asyncio.run(main())
    assert r.status_code == 400 and r.headers["x-slmstack-answered-by"] == "llm"
    assert len(upstream.received) == 1


def test_a_new_student_is_promoted_on_its_own_calls_and_served_only_if_it_was_weighed(tmp_path):
    """A retrained student must not inherit the gate its predecessor passed, nor its threshold."""
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    store = ShadowStore(url)
    at = datetime.now(UTC)
    good = [ShadowRow(f"a{i}", "t-bank", at, 1.0, True, "x", "x", 0.9, 1.0, student="v1")
            for i in range(150)]  # fmt: skip
    store.insert(good)
    decision = promote(store, "t-bank", min_n=100, min_n_above=50, min_agreement=0.9)
    assert decision.promoted and decision.student == "v1"
    store.insert(ShadowRow(f"b{i}", "t-bank", at, 0.0, False, "x", "y", 0.9, 1.0, student="v2")
                 for i in range(10))  # fmt: skip
    again = promote(store, "t-bank", min_n=100, min_n_above=50, min_agreement=0.9)
    assert not again.promoted and again.student == "v2"  # v1's 150 agreeing calls do not count
    assert "10 shadowed calls of its student v2" in again.reason
    # a proxy running another student than the promoted one does not serve the task
    store.record(promoted())
    store.record(replace(promoted(), student="v1"))
    v2 = Serving([ShadowTask("t-bank", "classification", "", PREFIX, SUFFIX, Student(),
                             "v2")], store)  # fmt: skip
    v1 = Serving([ShadowTask("t-bank", "classification", "", PREFIX, SUFFIX, Student(),
                             "v1")], store)  # fmt: skip
    assert (v2.active, v1.active) == (False, True)
