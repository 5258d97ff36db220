"""``slmstack proxy``: requests forwarded unchanged, answers passed back, calls recorded.

The upstream is :class:`proxy_doubles.FakeUpstream`, an in-process ASGI app reached
through ``httpx.ASGITransport``; one test runs both on loopback ports with uvicorn and
the official ``openai`` client, streaming included.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from llm_server import free_port
from proxy_doubles import FakeUpstream, client, make_proxy, read_body, serving
from slmstack.costs import Ledger, load_prices, to_nano
from slmstack.errors import ConfigError
from slmstack.proxy import ProxyConfig, TrafficStore, create_proxy_app

BODY = {"model": "gpt-4o-mini", "temperature": 0,
        "messages": [{"role": "system", "content": "You classify banking queries."},
                     {"role": "user", "content": "Query: where is my new card\nIntent:"}]}  # fmt: skip


def run(coro_fn):
    return asyncio.run(coro_fn())


def test_forwards_body_and_headers_unchanged_and_records_the_call(tmp_path):
    upstream = FakeUpstream()
    raw = json.dumps(BODY, indent=1).encode()  # odd spacing: must reach upstream byte for byte

    async def main():
        async with make_proxy(tmp_path, upstream) as proxy, client(proxy) as http:
            r = await http.post("/v1/chat/completions?trace=1", content=raw,
                                headers={"authorization": "Bearer sk-client", "x-app": "desk",
                                         "content-type": "application/json"})  # fmt: skip
            assert proxy.recorder.wait_idle()
            return r

    r = run(main)
    assert r.status_code == 200
    [seen] = upstream.received
    assert seen["body"] == raw
    assert seen["path"] == "/v1/chat/completions" and seen["query"] == b"trace=1"
    assert seen["headers"][b"authorization"] == b"Bearer sk-client"
    assert seen["headers"][b"x-app"] == b"desk"
    assert r.content == upstream.sent[0]  # the answer, byte for byte
    assert r.headers["x-upstream"] == "fake"

    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    [row] = TrafficStore(url, create=False).rows()
    assert row.model == "gpt-4o-mini" and row.status == 200 and not row.stream
    assert row.system == "You classify banking queries."
    assert row.user == "Query: where is my new card\nIntent:"
    assert row.response == "card_arrival" and row.finish_reason == "stop"
    assert (row.tokens_in, row.tokens_out, row.tokens_source) == (21, 2, "upstream")
    assert json.loads(row.params) == {"temperature": 0}
    assert row.api_key_id is not None and "sk-client" not in row.api_key_id
    assert row.latency_ms > 0 and not row.masked
    want = to_nano(load_prices().token_cost("gpt-4o-mini", 21, 2))
    assert row.cost_nusd == want > 0 and row.cost_status == "priced"
    [ledger_row] = Ledger(url, create=False).rows()
    assert ledger_row.request_id == row.request_id
    assert (ledger_row.workflow, ledger_row.kind, ledger_row.model) == (
        "proxy",
        "llm",
        "gpt-4o-mini",
    )
    assert ledger_row.cost_nusd == want and ledger_row.decision == "priced"


def test_stream_passes_through_byte_equal_and_records_usage_from_the_final_chunk(tmp_path):
    upstream = FakeUpstream(lambda text: "your card is on its way")
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}

    async def main():
        async with make_proxy(tmp_path, upstream) as proxy, client(proxy) as http:
            async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                got = b"".join([c async for c in r.aiter_raw()])
                kind = r.headers["content-type"]
            assert proxy.recorder.wait_idle()
            return got, kind

    got, kind = run(main)
    assert kind.startswith("text/event-stream")
    assert got == upstream.sent[0]
    [row] = TrafficStore(f"sqlite:///{tmp_path / 'proxy.db'}").rows()
    assert row.stream and row.response == "your card is on its way"
    assert (row.tokens_in, row.tokens_out, row.tokens_source) == (21, 2, "upstream")
    assert row.cost_status == "priced" and row.cost_nusd > 0


def test_stream_without_usage_is_counted_or_flagged_never_free(tmp_path):
    upstream = FakeUpstream(lambda text: "your card is on its way")
    body = {**BODY, "stream": True}

    async def send(proxy):
        async with client(proxy) as http:
            r = await http.post("/v1/chat/completions", json=body)
            assert r.status_code == 200
        assert proxy.recorder.wait_idle()

    async def main():
        async with make_proxy(tmp_path / "a", upstream) as proxy:
            await send(proxy)
        counted = make_proxy(tmp_path / "b", upstream, count_tokens=lambda t: len(t.split()))
        async with counted as proxy:
            await send(proxy)

    run(main)
    [missing] = TrafficStore(f"sqlite:///{tmp_path / 'a' / 'proxy.db'}").rows()
    assert (missing.tokens_source, missing.cost_status, missing.cost_nusd) == (
        "missing",
        "no_usage",
        0,
    )
    [ledger_row] = Ledger(f"sqlite:///{tmp_path / 'a' / 'proxy.db'}").rows()
    assert "include_usage" in (ledger_row.reason or "")
    [counted] = TrafficStore(f"sqlite:///{tmp_path / 'b' / 'proxy.db'}").rows()
    assert (counted.tokens_in, counted.tokens_out, counted.tokens_source) == (11, 6, "counted")
    assert counted.cost_status == "priced" and counted.cost_nusd > 0


def test_unknown_model_is_recorded_unpriced_and_price_as_prices_it(tmp_path):
    upstream = FakeUpstream()
    body = {**BODY, "model": "qwen-local"}

    async def main(folder, **kw):
        async with make_proxy(folder, upstream, **kw) as proxy, client(proxy) as http:
            await http.post("/v1/chat/completions", json=body)
            assert proxy.recorder.wait_idle()

    run(lambda: main(tmp_path / "a"))
    run(lambda: main(tmp_path / "b", price_as="gpt-4"))
    [unpriced] = TrafficStore(f"sqlite:///{tmp_path / 'a' / 'proxy.db'}").rows()
    assert (unpriced.cost_status, unpriced.cost_nusd) == ("unpriced", 0)
    [row] = Ledger(f"sqlite:///{tmp_path / 'a' / 'proxy.db'}").rows()
    assert "qwen-local" in row.reason and "--price-as" in row.reason
    [priced] = TrafficStore(f"sqlite:///{tmp_path / 'b' / 'proxy.db'}").rows()
    assert priced.cost_nusd == to_nano(load_prices().token_cost("gpt-4", 21, 2))


def test_models_and_errors_are_forwarded_and_only_chat_is_recorded(tmp_path):
    upstream = FakeUpstream(status=429)

    async def main():
        async with make_proxy(tmp_path, upstream) as proxy, client(proxy) as http:
            models = await http.get("/v1/models")
            refused = await http.post("/v1/chat/completions", json=BODY)
            missing = await http.get("/other")
            await http.post("/v1/embeddings", json={"model": "m", "input": "x"})
            await http.post("/v1/embeddings", json={"model": "m", "input": "y"})
            await http.post("/v1/chat/completions/", json=BODY)  # a trailing slash: recorded
            health = await http.get("/healthz")
            assert proxy.recorder.wait_idle()
            assert proxy.recorder.recorded == 2  # both chat calls, the slash-ended one too
            return models, refused, missing, health

    models, refused, missing, health = run(main)
    assert health.json()["unrecorded"] == {"/v1/embeddings": 2}
    assert models.json()["data"][0]["id"] == "gpt-4o-mini"
    assert refused.status_code == 429 and refused.json()["error"]["message"] == "rate limited"
    assert missing.status_code == 404 and "/v1/" in missing.json()["error"]["message"]
    assert health.json()["status"] == "ok" and health.json()["write_error"] is None
    assert health.json()["pending"] == 0
    rows = TrafficStore(f"sqlite:///{tmp_path / 'proxy.db'}").rows()
    assert [(r.status, r.cost_status, r.cost_nusd) for r in rows] == [(429, "failed", 0)] * 2


def test_unreachable_upstream_is_a_502_with_the_reason_and_is_recorded(tmp_path):
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    async def main():
        proxy = make_proxy(tmp_path, FakeUpstream(), transport=httpx.MockTransport(refuse))
        async with proxy, client(proxy) as http:
            r = await http.post("/v1/chat/completions", json=BODY)
            assert proxy.recorder.wait_idle()
            return r

    r = run(main)
    assert r.status_code == 502
    assert "did not answer" in r.json()["error"]["message"]
    [row] = TrafficStore(f"sqlite:///{tmp_path / 'proxy.db'}").rows()
    assert row.status == 0 and row.cost_status == "failed" and "refused" in row.problem


def test_upstream_key_replaces_the_clients_and_a_missing_one_fails_at_start(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    with pytest.raises(ConfigError, match=r"\$UPSTREAM_KEY.*not set"):
        create_proxy_app(
            ProxyConfig(upstream="http://x/v1", ledger=url, upstream_key_env="UPSTREAM_KEY")
        )
    with pytest.raises(ConfigError, match="gpt-4o-minii.*did you mean 'gpt-4o-mini'"):
        create_proxy_app(ProxyConfig(upstream="http://x/v1", ledger=url, price_as="gpt-4o-minii"))
    with pytest.raises(ValueError, match="http"):
        ProxyConfig(upstream="api.openai.com/v1")

    monkeypatch.setenv("UPSTREAM_KEY", "sk-operator")
    upstream = FakeUpstream()

    async def main():
        proxy = make_proxy(tmp_path, upstream, upstream_key_env="UPSTREAM_KEY")
        async with proxy, client(proxy) as http:
            await http.post(
                "/v1/chat/completions", json=BODY, headers={"authorization": "Bearer sk-client"}
            )
            assert proxy.recorder.wait_idle()

    run(main)
    assert upstream.received[0]["headers"][b"authorization"] == b"Bearer sk-operator"


def test_openai_client_through_the_proxy_on_loopback(tmp_path):
    """Real sockets: uvicorn serves the fake upstream and the proxy; the openai client streams."""
    openai = pytest.importorskip("openai")
    upstream = FakeUpstream(lambda text: "one two three")
    up_port, proxy_port = free_port(), free_port()
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    proxy = create_proxy_app(ProxyConfig(upstream=f"http://127.0.0.1:{up_port}/v1", ledger=url,
                                         flush_every_s=0.01))  # fmt: skip
    with serving((upstream, up_port), (proxy, proxy_port)):
        llm = openai.OpenAI(base_url=f"http://127.0.0.1:{proxy_port}/v1", api_key="sk-test")
        answer = llm.chat.completions.create(model="gpt-4o-mini", messages=BODY["messages"])
        assert answer.choices[0].message.content == "one two three"
        stream = llm.chat.completions.create(
            model="gpt-4o-mini",
            messages=BODY["messages"],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces = [
            c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
        ]
        assert "".join(pieces) == "one two three"
        plain = httpx.post(f"http://127.0.0.1:{proxy_port}/v1/chat/completions", json=BODY)
        # uvicorn's own Date and Server, not the upstream's beside them
        assert [len(plain.headers.get_list(h)) for h in ("date", "server")] == [1, 1]
    rows = TrafficStore(url, create=False).rows()  # the lifespan's shutdown wrote them
    assert [(r.stream, r.response, r.tokens_source) for r in rows] == [
        (False, "one two three", "upstream"),
        (True, "one two three", "upstream"),
        (False, "one two three", "upstream"),
    ]


def test_rows_the_database_refuses_at_the_stop_go_to_a_file_not_away(tmp_path, monkeypatch):
    import time as _time

    from fakes import down_traffic_store
    from slmstack.costs import Ledger, load_prices
    from slmstack.proxy.exchange import Exchange
    from slmstack.proxy.recorder import Recorder
    from slmstack.proxy.recording import Pricing

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    recorder = Recorder(down_traffic_store(url), Ledger(url),
                        pricing=Pricing(load_prices(), None, None), flush_every_s=0.01)  # fmt: skip
    recorder.start()
    body = json.dumps(BODY).encode()
    answer = json.dumps({"choices": [{"message": {"role": "assistant", "content": "hi"}}],
                         "model": "gpt-4o-mini",
                         "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).encode()  # fmt: skip
    recorder.submit(Exchange("/v1/chat/completions", body, answer, 200, "application/json", "",
                             None, _time.time(), 5.0, 5.0, None))  # fmt: skip
    recorder.close()
    [spilled] = list(tmp_path.glob("slmstack-proxy-unrecorded-*.jsonl"))
    row = json.loads(spilled.read_text())
    assert row["traffic"]["model"] == "gpt-4o-mini" and row["ledger"]["tokens_in"] == 3


def test_a_recorder_that_cannot_finish_in_time_says_what_it_leaves(tmp_path, caplog):
    import threading
    import time as _time

    from slmstack.proxy.exchange import Exchange
    from slmstack.proxy.recorder import Recorder
    from slmstack.proxy.recording import Pricing
    from slmstack.proxy.traffic import TrafficStore

    release = threading.Event()

    class Stuck(TrafficStore):
        def insert(self, rows):
            release.wait(10)  # a database that hangs
            return super().insert(rows)

    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    recorder = Recorder(Stuck(url), Ledger(url), pricing=Pricing(load_prices(), None, None),
                        flush_every_s=0.01)  # fmt: skip
    recorder.start()
    body = json.dumps(BODY).encode()
    for _ in range(3):
        recorder.submit(Exchange("/v1/chat/completions", body, b"{}", 200, "application/json",
                                 "", None, _time.time(), 5.0, 5.0, None))  # fmt: skip
    with caplog.at_level("ERROR", logger="slmstack.proxy"):
        recorder.close(timeout_s=0.3)
    release.set()
    assert "did not finish within 0.3 s" in caplog.text and "not recorded" in caplog.text


def test_a_call_no_database_column_could_hold_is_recorded_fitted_and_failures_show(tmp_path):
    """A 250-character model name or a NUL (PostgreSQL refuses both) must not stop recording."""
    import time as _time

    from slmstack.proxy.exchange import Exchange
    from slmstack.proxy.recorder import Recorder
    from slmstack.proxy.recording import Pricing

    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    fail = {"left": 1}

    class Flaky(TrafficStore):
        def insert(self, rows):
            rows = list(rows)
            if fail["left"]:
                fail["left"] -= 1
                raise ConfigError("the database is down")
            return super().insert(rows)

    recorder = Recorder(Flaky(url), Ledger(url), pricing=Pricing(load_prices(), None, None),
                        flush_every_s=0.01)  # fmt: skip
    body = {**BODY, "model": "m" * 250}
    body["messages"] = [{"role": "user", "content": "a\x00b"}]
    answer = json.dumps({"choices": [{"message": {"role": "assistant", "content": "c\x00"}}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).encode()  # fmt: skip
    recorder.submit(Exchange("/v1/chat/completions/" + "x" * 400, json.dumps(body).encode(),
                             answer, 200, "application/json", "", None, _time.time(), 5.0, 5.0,
                             None))  # fmt: skip
    recorder._drain_now()  # what the recording thread does, here in the test's thread
    assert (recorder.pending, recorder.write_error) == (1, "the database is down")
    recorder._write()  # the thread's retry
    assert (recorder.pending, recorder.write_error, recorder.recorded) == (0, None, 1)
    [row] = TrafficStore(url).rows()
    assert row.model == "m" * 200 and row.user == "a\ufffdb" and row.response == "c\ufffd"
    [spent] = Ledger(url).rows()
    assert len(spent.model) == 200 and len(spent.step) == 300


class SlowUpstream:
    """Streams ``n`` chunks ``gap_s`` apart (or answers once after ``n * gap_s``)."""

    def __init__(self, n: int = 60, gap_s: float = 0.05):
        self.n, self.gap_s, self.sent = n, gap_s, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if not json.loads(body).get("stream"):
            await asyncio.sleep(self.n * self.gap_s)
            answer = {"choices": [{"message": {"role": "assistant", "content": "late"}}],
                      "usage": {"prompt_tokens": 3, "completion_tokens": 1}}  # fmt: skip
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": json.dumps(answer).encode()})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})  # fmt: skip
        for i in range(self.n):
            chunk = {"choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}
            await send({"type": "http.response.body", "more_body": True,
                        "body": f"data: {json.dumps(chunk)}\n\n".encode()})  # fmt: skip
            self.sent += 1
            await asyncio.sleep(self.gap_s)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def test_a_client_that_leaves_stops_the_stream_and_is_recorded_as_gone(tmp_path):
    upstream = SlowUpstream()
    up_port, proxy_port = free_port(), free_port()
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    proxy = create_proxy_app(ProxyConfig(upstream=f"http://127.0.0.1:{up_port}/v1", ledger=url,
                                         flush_every_s=0.01))  # fmt: skip
    with serving((upstream, up_port), (proxy, proxy_port)):
        base = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
        with httpx.Client() as http:
            with http.stream("POST", base, json={**BODY, "stream": True}) as s:
                next(s.iter_raw())  # one chunk, then the client hangs up
            with pytest.raises(httpx.ReadTimeout):
                http.post(base, json=BODY, timeout=0.3)  # gives up before the answer
        time.sleep(0.5)
        assert upstream.sent < upstream.n  # the proxy stopped reading (and paying) early
    rows = TrafficStore(url, create=False).rows()
    assert [(r.stream, r.problem) for r in rows] == [
        (True, "the client left before the end of the stream"),
        (False, "the client left before the upstream answered"),
    ]


def test_a_streamed_answer_holding_a_unicode_line_separator_is_read_whole():
    # SSE lines end at CR, LF or CRLF only; a server writing JSON with ensure_ascii off
    # sends U+2028 raw inside a string, which str.splitlines() would cut the event at.
    import time as _time

    from slmstack.proxy.exchange import Exchange, parse

    events = [{"choices": [{"delta": {"content": "line one\u2028"}}]},
              {"choices": [{"delta": {"content": "line two"}, "finish_reason": "stop"}]}]  # fmt: skip
    raw = "".join(f"data: {json.dumps(e, ensure_ascii=False)}\r\n\r\n" for e in events)
    request = json.dumps({**BODY, "stream": True}).encode()
    ex = Exchange("/v1/chat/completions", request, (raw + "data: [DONE]\n\n").encode(), 200,
                  "text/event-stream", "", None, _time.time(), 5.0, 5.0)  # fmt: skip
    got = parse(ex)
    assert got.problem is None
    assert got.response_text == "line one\u2028line two" and got.finish_reason == "stop"


def test_an_upstream_that_breaks_off_before_its_answer_is_a_502_not_a_bare_500(tmp_path):
    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield b'{"id": "chatcmpl-1", "choices": ['
            raise httpx.RemoteProtocolError("peer closed connection without sending the body")

    def half(request):
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=Broken())

    sent: list[dict] = []

    async def main():
        proxy = make_proxy(tmp_path, FakeUpstream(), transport=httpx.MockTransport(half))
        body = json.dumps(BODY).encode()
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)  # the client stays

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
                 "query_string": b"", "headers": [(b"content-type", b"application/json")]}  # fmt: skip
        async with proxy:
            await proxy(scope, receive, send)
            assert proxy.recorder.wait_idle()

    run(main)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 502
    error = json.loads(sent[1]["body"])["error"]
    assert "broke off" in error["message"] and "RemoteProtocolError" in error["message"]
    [row] = TrafficStore(f"sqlite:///{tmp_path / 'proxy.db'}").rows()
    assert "broke off" in row.problem and row.cost_status != "priced"


def test_one_exchange_that_cannot_be_recorded_does_not_lose_the_rest_of_its_batch(tmp_path):
    from slmstack.costs import Ledger, load_prices
    from slmstack.proxy import Exchange, Masker, Recorder, generate_key
    from slmstack.proxy.recording import Pricing

    class Picky(Masker):  # a masker that fails on one text (a tagger's bug, say)
        def mask_many(self, texts):
            if any("boom" in t for t in texts):
                raise RuntimeError("the tagger broke")
            return super().mask_many(texts)

    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    recorder = Recorder(TrafficStore(url), Ledger(url), pricing=Pricing(load_prices()),
                        masker=Picky(generate_key()))  # fmt: skip
    answer = {"choices": [{"message": {"role": "assistant", "content": "hi"},
                           "finish_reason": "stop"}], "model": "gpt-4o-mini",
              "usage": {"prompt_tokens": 3, "completion_tokens": 1}}  # fmt: skip
    odd = {**answer, "choices": [{"message": {"content": "hi"}, "finish_reason": 7}]}
    broken_tools = {**BODY, "messages": [{"role": "assistant", "content": "x", "tool_calls": 5},
                                         *BODY["messages"]]}  # fmt: skip
    boom = {**BODY, "messages": [{"role": "user", "content": "boom"}]}
    calls = [(BODY, answer), (broken_tools, answer), (BODY, odd), (boom, answer), (BODY, answer)]
    for request, response in calls:  # one batch: the recorder is not started
        recorder.submit(Exchange("/v1/chat/completions", json.dumps(request).encode(),
                                 json.dumps(response).encode(), 200, "application/json", "",
                                 None, time.time(), 5.0, 5.0))  # fmt: skip
    recorder.close()
    rows = TrafficStore(url).rows()
    assert (recorder.recorded, recorder.failed, len(rows)) == (4, 1, 4)  # only "boom" is lost
    assert [r.finish_reason for r in rows] == ["stop", "stop", "7", "stop"]


@pytest.mark.parametrize("driver", ["pg8000", "nosuchdriver"])
def test_a_database_that_cannot_be_opened_is_named_without_its_password(tmp_path, driver):
    from slmstack.costs import Ledger
    from slmstack.errors import SlmstackError

    url = f"postgresql+{driver}://app:s3cr3t-pw@db.internal/llm"
    for open_ in (TrafficStore, Ledger):
        with pytest.raises(SlmstackError) as caught:
            open_(url)
        assert "s3cr3t-pw" not in str(caught.value) and "db.internal" in str(caught.value)


def test_a_database_other_than_sqlite_or_postgresql_is_refused_before_its_driver_loads():
    # It was "needs the 'MySQLdb' package ... pip install 'slmstack[postgres]'": no fix.
    with pytest.raises(ConfigError, match=r"SQLite or PostgreSQL; mysql://app@db/llm is mysql"):
        TrafficStore("mysql://app@db/llm")


def test_a_gzipped_answer_the_upstream_sends_anyway_reaches_the_client_whole(tmp_path):
    import gzip

    answer = {"id": "chatcmpl-1", "model": "gpt-4o-mini", "choices": [{"index": 0,
              "message": {"role": "assistant", "content": "card_arrival"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 9, "completion_tokens": 2}}  # fmt: skip

    class Gzipped(httpx.AsyncByteStream):  # off the network, as a real transport streams it
        async def __aiter__(self):
            yield gzip.compress(json.dumps(answer).encode())

    def gzipping(request):  # a server that compresses whatever Accept-Encoding says
        return httpx.Response(200, stream=Gzipped(), headers={
            "content-type": "application/json", "content-encoding": "gzip"})  # fmt: skip

    async def main():
        proxy = make_proxy(tmp_path, FakeUpstream(), transport=httpx.MockTransport(gzipping))
        async with proxy, client(proxy) as http:
            r = await http.post("/v1/chat/completions", json=BODY)
            assert proxy.recorder.wait_idle()
            return r

    r = run(main)
    assert r.status_code == 200 and r.json() == answer
    [row] = TrafficStore(f"sqlite:///{tmp_path / 'proxy.db'}").rows()
    assert row.response == "card_arrival" and row.problem is None and row.tokens_in == 9


def test_an_answer_without_a_choice_or_a_stream_without_its_end_is_a_problem_not_an_answer():
    # An upstream that says 200 with an error body, or with no choice (filtered), gave no
    # answer; a stream that stopped before its finish_reason and [DONE] was cut. None of
    # them is an empty or partial answer for discovery, distillation or the shadow to read.
    import time as _time

    from slmstack.proxy.exchange import Exchange, parse

    def parsed(raw: dict | str, stream: bool = False):
        body = raw if isinstance(raw, str) else json.dumps(raw)
        kind = "text/event-stream" if stream else "application/json"
        request = json.dumps({**BODY, "stream": stream}).encode()
        return parse(Exchange("/v1/chat/completions", request, body.encode(), 200, kind, "",
                              None, _time.time(), 5.0, 5.0))  # fmt: skip

    error = parsed({"error": {"message": "overloaded", "type": "server_error"}})
    assert error.problem is not None and "overloaded" in error.problem
    empty = parsed({"id": "c", "choices": [], "usage": {"prompt_tokens": 3}})
    assert empty.problem == "the upstream's answer has no choice"
    piece = {"choices": [{"index": 0, "delta": {"content": "card_"}}]}
    cut = parsed(f"data: {json.dumps(piece)}\n\n", stream=True)
    assert cut.problem == "the stream ended before its finish_reason and [DONE]"
    whole = parsed(f"data: {json.dumps(piece)}\n\ndata: [DONE]\n\n", stream=True)
    assert whole.problem is None and whole.response_text == "card_"
    fine = parsed({"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]})
    assert fine.problem is None and fine.response_text == "ok"


def test_an_upstream_usage_that_is_no_token_count_does_not_stop_the_recording(tmp_path):
    """A usage of 1e25 or -5 tokens had killed the recorder's thread (OverflowError)."""
    import time as _time

    from slmstack.proxy.exchange import Exchange
    from slmstack.proxy.recorder import Recorder
    from slmstack.proxy.recording import Pricing

    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    recorder = Recorder(TrafficStore(url), Ledger(url), pricing=Pricing(load_prices(), None, None),
                        flush_every_s=0.01)  # fmt: skip
    recorder.start()

    def call(usage: dict) -> None:
        answer = json.dumps({"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                             "usage": usage}).encode()  # fmt: skip
        recorder.submit(Exchange("/v1/chat/completions", json.dumps(BODY).encode(), answer, 200,
                                 "application/json", "", None, _time.time(), 5.0, 5.0))  # fmt: skip
        assert recorder.wait_idle(5)

    call({"prompt_tokens": 1e25, "completion_tokens": 1})
    call({"prompt_tokens": 3, "completion_tokens": -5})
    call({"prompt_tokens": 3, "completion_tokens": 1})
    recorder.close()
    rows = TrafficStore(url).rows()
    assert [(r.tokens_in, r.tokens_out, r.tokens_source, r.cost_status) for r in rows] == [
        (0, 0, "missing", "no_usage"), (0, 0, "missing", "no_usage"), (3, 1, "upstream", "priced")
    ]  # fmt: skip
    assert all(r.cost_nusd >= 0 for r in Ledger(url).rows())

    class Odd(TrafficStore):  # a failure that is no database error: the thread goes on
        def insert(self, rows):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")

    odd = Recorder(Odd(url), Ledger(url), pricing=Pricing(load_prices(), None, None),
                   flush_every_s=0.01)  # fmt: skip
    odd.start()
    odd.submit(Exchange("/v1/chat/completions", json.dumps(BODY).encode(), b"{}", 200,
                        "application/json", "", None, _time.time(), 5.0, 5.0))  # fmt: skip
    deadline = _time.monotonic() + 5
    while odd.failed == 0 and _time.monotonic() < deadline:
        _time.sleep(0.01)
    assert odd.failed == 1 and "OverflowError" in (odd.write_error or "")
    assert odd._thread is not None and odd._thread.is_alive()
    odd.close()
