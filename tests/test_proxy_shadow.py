"""Shadow mode and the promotion gate: students compared with the LLM, a bound not a guess."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from proxy_doubles import FakeUpstream, client, make_proxy
from slmstack.cli.app import app
from slmstack.errors import ConfigError
from slmstack.proxy import Masker, generate_key, strip_tokens
from slmstack.proxy.promote import ShadowStore, promote, wilson_lower
from slmstack.proxy.shadow import Shadow, ShadowTask, agreement, load_shadow
from slmstack.types import Prediction

PREFIX, SUFFIX = "Classify: card_arrival, refund.\nQuery: ", "\nIntent:"


class Student:
    """Says card_arrival, except "refund" for queries that mention money."""

    def __init__(self):
        self.seen: list[str] = []

    def predict(self, texts):
        self.seen += texts
        return [
            Prediction(label="refund" if "money" in t else "card_arrival", confidence=0.8)
            for t in texts
        ]


def test_wilson_lower_bound():
    assert wilson_lower(0, 0) == 0.0
    assert wilson_lower(19, 20) < 0.9 < wilson_lower(187, 200)
    assert wilson_lower(186, 200) < 0.9
    assert wilson_lower(50, 50) < 1.0
    with pytest.raises(ConfigError, match="within 0..n"):
        wilson_lower(5, 3)


def test_extraction_agreement_reads_field_extractor_records_and_normalises_values():
    from slmstack.data.fields import parse_schema
    from slmstack.proxy.shadow import student_text

    specs = parse_schema({"date": {"type": "date", "order": "DMY"}, "total": "amount",
                          "company": "text"})  # fmt: skip
    record = {
        "date": {"value": "2018-01-15", "confidence": 0.9},
        "total": {"value": "12.50", "currency": None, "confidence": 0.8},
        "company": {"value": None, "missing": True, "confidence": 0.1},
    }
    pred = Prediction(data={"fields": record, "missing": ["company"]}, confidence=0.1)
    llm = '{"date": "15/01/2018", "total": "RM 12.5", "company": "ACME SDN BHD"}'
    score, agree = agreement("extraction", llm, pred, specs)
    assert (round(score, 3), agree) == (0.667, False)  # company missing: the one miss
    assert agreement("extraction", '{"date": "15/01/2018", "total": "12.50"}', pred, specs) == (
        1.0,
        True,
    )
    assert agreement("extraction", '{"date": "not a date"}', pred, specs) == (0.0, False)
    # what a served extraction answers: the flat fields, as the LLM would
    assert json.loads(student_text("extraction", pred)) == {
        "company": None,
        "date": "2018-01-15",
        "total": "12.50",
    }


def test_agreement_fits_the_task_kind():
    assert agreement("classification", " Card_Arrival.", Prediction(label="card_arrival")) == (
        1.0,
        True,
    )
    assert agreement("classification", "refund", Prediction(label="card_arrival"))[1] is False
    score, agree = agreement(
        "extraction",
        '{"total": "9.00", "date": "01/02/2018"}',
        Prediction(data={"total": "9.00", "date": "02/02/2018"}),
    )
    assert (score, agree) == (0.5, False)
    assert agreement(
        "generation", "the card is on its way", Prediction(text="the card is on its way")
    )[1]
    assert not agreement("generation", "the card is on its way", Prediction(text="refund issued"))[
        1
    ]


def test_shadowed_calls_are_compared_stored_masked_and_gated(tmp_path):
    student = Student()
    shadow = Shadow([ShadowTask("t-bank", "classification", "", PREFIX, SUFFIX, student)])
    upstream = FakeUpstream(lambda text: "card_arrival")  # the LLM never says refund
    key = generate_key()
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    store = ShadowStore(url)

    async def main():
        proxy = make_proxy(
            tmp_path, upstream, masker=Masker(key), shadow=shadow, shadow_store=store
        )
        async with proxy, client(proxy) as http:
            for i in range(40):
                query = (
                    f"where is my card {i}, mail me at a{i}@example.com"
                    if i % 10
                    else "send my money back"
                )
                body = {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": PREFIX + query + SUFFIX}],
                }
                assert (await http.post("/v1/chat/completions", json=body)).status_code == 200
            other = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
            await http.post("/v1/chat/completions", json=other)  # not the task's: not shadowed
            assert proxy.recorder.wait_idle()

    asyncio.run(main())
    assert (
        len(student.seen) == 40
        and student.seen[1] == "where is my card 1, mail me at a1@example.com"
    )
    agreed = store.agreements("t-bank", window=100)
    assert (len(agreed), sum(agreed)) == (40, 36)
    import sqlalchemy as sa

    with sa.create_engine(url).connect() as conn:
        answers = [r[0] for r in conn.execute(sa.text("select llm_answer from slmstack_shadow"))]
    assert answers.count("card_arrival") == 40

    too_few = promote(store, "t-bank", min_n=100, min_agreement=0.5)
    assert not too_few.promoted and "fewer than the 100" in too_few.reason
    strict = promote(store, "t-bank", min_n=20, min_agreement=0.9)  # 36/40 = 0.9, bound < 0.9
    assert not strict.promoted and strict.lower_bound < 0.9
    ok = promote(store, "t-bank", min_n=20, min_n_above=20, min_agreement=0.75)
    assert ok.promoted and store.promoted("t-bank")

    result = CliRunner().invoke(
        app,
        [
            "promote",
            "--task",
            "t-bank",
            "--ledger",
            url,
            "--min-n",
            "20",
            "--min-agreement",
            "0.9",
            "--json",
        ],
    )
    assert result.exit_code == 1 and json.loads(result.output)["promoted"] is False
    assert not store.promoted("t-bank")  # the latest decision wins


def test_stored_comparisons_are_masked(tmp_path):
    class Echo:
        def predict(self, texts):
            return [Prediction(text=t) for t in texts]

    shadow = Shadow([ShadowTask("t-sum", "generation", "", "Summarize: ", "", Echo())])
    upstream = FakeUpstream(lambda text: text.removeprefix("Summarize: "))
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    store = ShadowStore(url)

    async def main():
        proxy = make_proxy(
            tmp_path, upstream, masker=Masker(generate_key()), shadow=shadow, shadow_store=store
        )
        async with proxy, client(proxy) as http:
            body = {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "user", "content": "Summarize: call Ana at +44 20 7946 0958"}
                ],
            }
            await http.post("/v1/chat/completions", json=body)
            assert proxy.recorder.wait_idle()

    asyncio.run(main())
    import sqlalchemy as sa

    with sa.create_engine(url).connect() as conn:
        [(llm, student, agree)] = list(
            conn.execute(sa.text("select llm_answer, student_answer, agree from slmstack_shadow"))
        )
    assert agree and "7946" not in llm + student
    assert strip_tokens(student) == "call Ana at <PHONE>"


def test_load_shadow_checks_the_tasks_file(tmp_path):
    tasks = tmp_path / "tasks.json"
    with pytest.raises(ConfigError, match="slmstack discover --json"):
        load_shadow(tasks, {"t-1": tmp_path})
    tasks.write_text(
        json.dumps(
            {
                "tasks": [
                    {
                        "task_id": "t-2",
                        "kind": "generation",
                        "system": "",
                        "prefix": "",
                        "suffix": "",
                    }
                ]
            }
        )
    )
    with pytest.raises(ConfigError, match="'t-1' is not in"):
        load_shadow(tasks, {"t-1": tmp_path})


def test_a_broken_shadow_student_costs_no_record(tmp_path):
    class Broken:
        def predict(self, texts):
            raise RuntimeError("student crashed")

    shadow = Shadow([ShadowTask("t-bank", "classification", "", PREFIX, SUFFIX, Broken())])
    upstream = FakeUpstream(lambda text: "card_arrival")
    url = f"sqlite:///{tmp_path / 'proxy.db'}"

    async def main():
        proxy = make_proxy(tmp_path, upstream, shadow=shadow, shadow_store=ShadowStore(url))
        async with proxy, client(proxy) as http:
            for content in (PREFIX + "where is my card" + SUFFIX, "hello"):  # the task's, and not
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
                assert (await http.post("/v1/chat/completions", json=body)).status_code == 200
            assert proxy.recorder.wait_idle()
            return proxy

    proxy = asyncio.run(main())
    assert (proxy.recorder.recorded, proxy.recorder.failed) == (2, 0)  # both calls kept
    assert ShadowStore(url).agreements("t-bank", window=10) == []  # nothing compared


def test_an_answer_cut_short_is_not_compared_with_the_student():
    from slmstack.costs import load_prices
    from slmstack.proxy import Exchange, Pricing, build_rows

    shadow = Shadow([ShadowTask("t-bank", "classification", "", PREFIX, SUFFIX, Student())])
    request = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [
        {"role": "user", "content": PREFIX + "where is my card" + SUFFIX}]}).encode()  # fmt: skip
    part = b'data: {"choices": [{"index": 0, "delta": {"content": "card_"}}]}\n\n'
    errors = ("the client left before the end of the stream",  # it hung up after a piece
              "the exchange broke off: ReadError: reset")  # the upstream broke mid-stream
    cut = [Exchange("/v1/chat/completions", request, part, 200, "text/event-stream", "", None,
                    0.0, 5.0, 1.0, error) for error in errors]  # fmt: skip
    recorded = build_rows(cut, pricing=Pricing(load_prices(None)), shadow=shadow)
    assert recorded.shadow == []  # "card_" is no answer to agree or disagree with
    assert [t.problem for t, _ in recorded.rows] == [e.error for e in cut]


def test_shadow_rows_name_their_student_by_its_folder(tmp_path):
    from slmstack.proxy.shadow import student_id

    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "config.json").write_text('{"files": {"w": "aa"}}')
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "config.json").write_text('{"files": {"w": "bb"}}')
    ids = student_id(tmp_path / "v1"), student_id(tmp_path / "v2")
    assert ids[0] != ids[1] and ids[0] == student_id(tmp_path / "v1")
    task = ShadowTask("t-bank", "classification", "", PREFIX, SUFFIX, Student(), ids[0])
    at = datetime.now(UTC)
    [row] = Shadow([task]).compare([("r1", at, "", PREFIX + "where is my card" + SUFFIX, "x")])
    assert row.student == ids[0]


def test_comparisons_the_database_refuses_at_the_stop_are_spilled_with_their_calls(
    tmp_path, monkeypatch
):
    import time

    from fakes import down_traffic_store
    from slmstack.costs import Ledger, load_prices
    from slmstack.proxy import Exchange, Pricing
    from slmstack.proxy.recorder import Recorder

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    shadow = Shadow([ShadowTask("t-bank", "classification", "", PREFIX, SUFFIX, Student())])
    recorder = Recorder(down_traffic_store(url), Ledger(url), pricing=Pricing(load_prices()),
                        shadow=shadow, shadow_store=ShadowStore(url), flush_every_s=0.01)  # fmt: skip
    recorder.start()
    request = json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": PREFIX + "where is my card" + SUFFIX}]}).encode()  # fmt: skip
    answer = json.dumps({"choices": [{"message": {"content": "card_arrival"},
                                      "finish_reason": "stop"}]}).encode()  # fmt: skip
    recorder.submit(Exchange("/v1/chat/completions", request, answer, 200, "application/json",
                             "", None, time.time(), 5.0, 5.0))  # fmt: skip
    recorder.close()
    [spilled] = list(tmp_path.glob("slmstack-proxy-unrecorded-*.jsonl"))
    lines = [json.loads(line) for line in spilled.read_text().splitlines()]
    assert [sorted(line) for line in lines] == [["ledger", "traffic"], ["shadow"]]
    assert lines[1]["shadow"]["task_id"] == "t-bank" and lines[1]["shadow"]["agree"] is True


def test_an_answer_cut_at_max_tokens_is_not_compared_with_the_student():
    from slmstack.costs import load_prices
    from slmstack.proxy import Exchange, Pricing, build_rows

    shadow = Shadow([ShadowTask("t-bank", "classification", "", PREFIX, SUFFIX, Student())])
    request = json.dumps({"model": "gpt-4o-mini", "max_tokens": 2, "messages": [
        {"role": "user", "content": PREFIX + "where is my card" + SUFFIX}]}).encode()  # fmt: skip

    def answer(text, reason):
        body = {"choices": [{"index": 0, "finish_reason": reason,
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 2}}  # fmt: skip
        return Exchange("/v1/chat/completions", request, json.dumps(body).encode(), 200,
                        "application/json", "", None, 0.0, 5.0, 1.0, None)  # fmt: skip

    recorded = build_rows([answer("card_", "length"), answer("card_arrival", "stop")],
                          pricing=Pricing(load_prices(None)), shadow=shadow)  # fmt: skip
    assert len(recorded.rows) == 2  # both calls are recorded
    [row] = recorded.shadow  # only the whole answer is compared
    assert row.llm_answer == "card_arrival"
