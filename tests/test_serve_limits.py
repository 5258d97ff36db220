"""Each limit of the server, triggered: 413, 422 (items, empty, malformed), 429, 504, 503."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from fastapi.testclient import TestClient

from serve_doubles import Keywords, write_server
from slmstack.errors import DataError
from slmstack.serve import ServeState, create_app, load_config
from slmstack.serve.limits import texts_of

PREDICT = "/v1/skills/intent/predict"


@pytest.fixture(autouse=True)
def _fresh_keywords():
    Keywords.batches.clear()
    Keywords.gate.clear()
    Keywords.running.clear()
    yield
    Keywords.gate.set()


@pytest.fixture
def client(tmp_path):
    config = write_server(tmp_path, "limits: {max_body_bytes: 200, max_items: 3}\n")
    with TestClient(create_app(config)) as client:
        yield client


def test_a_declared_body_over_the_limit_is_413_before_it_is_read(client):
    response = client.post(PREDICT, json={"texts": ["card " * 60]})
    assert response.status_code == 413
    assert "at most 200 bytes (limits.max_body_bytes)" in response.json()["detail"]
    assert "Content-Length is" in response.json()["detail"]


def test_a_streamed_body_is_counted_as_it_arrives(client):
    def chunks():
        yield b'{"texts": ["'
        for _ in range(50):
            yield b"card card "  # no Content-Length: chunked
        yield b'"]}'

    response = client.post(PREDICT, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "more than 200 bytes were sent" in response.json()["detail"]

    def small():
        yield b'{"text": '
        yield b'"my card"}'

    ok = client.post(PREDICT, content=small(), headers={"content-type": "application/json"})
    assert ok.status_code == 200 and ok.json()["results"][0]["prediction"]["label"] == "card"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"texts": ["a", "b", "c", "d"]}, '"texts" has 4 items; this server takes at most 3'),
        ({"text": ""}, "text is empty"),
        ({"texts": ["card", "  "]}, "texts[1] is empty"),
        ({"texts": []}, '"texts" is empty'),
        ({}, 'send either "text" (one string) or "texts"'),
        ({"text": "a", "texts": ["b"]}, ", not both"),
    ],
)
def test_bad_requests_are_422_with_what_to_fix(client, body, message):
    response = client.post(PREDICT, json=body)
    assert response.status_code == 422
    assert message in response.json()["detail"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"text": 3}',
        b'{"texts": "one string"}',
        b'{"texts": [null]}',
        b'{"text": "a", "extra": 1}',
        b'{"text": ',
        b"[]",
    ],
)
def test_malformed_json_is_422_never_500(client, raw):
    response = client.post(PREDICT, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422


@pytest.mark.parametrize(
    "raw", [b'{"text": NaN}', b'{"texts": [Infinity]}', b'{"text": "a", "bogus": 1e999}']
)
def test_nan_and_infinity_are_422_and_no_value_is_echoed(client, raw):
    response = client.post(PREDICT, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert problems and all(set(p) == {"loc", "msg", "type"} for p in problems)
    secret = b'{"text": 5, "note": "my card number is 4111 1111 1111 1111"}'
    response = client.post(PREDICT, content=secret, headers={"content-type": "application/json"})
    assert response.status_code == 422 and "4111" not in response.text


def test_a_body_that_is_not_utf8_json_says_what_to_send(client):
    raw = b'{"text": "caf\xe9"}'
    response = client.post(PREDICT, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422 and "send UTF-8 JSON" in response.json()["detail"]
    plain = client.post(PREDICT, content=b'{"text": "hi"}', headers={"content-type": "text/plain"})
    assert plain.status_code == 422
    assert "Content-Type: application/json" in plain.json()["detail"][0]["msg"]


@pytest.mark.parametrize("kind", ["Application/JSON", "application/merge-patch+json"])
def test_a_body_read_as_json_gets_no_content_type_hint(client, kind):
    """FastAPI reads these as JSON: the 422 names the field, not the Content-Type."""
    response = client.post(PREDICT, content=b'{"text": 3}', headers={"content-type": kind})
    assert response.status_code == 422
    assert [p["loc"] for p in response.json()["detail"]] == [["body", "text"]]


def test_the_chat_route_answers_validation_errors_as_openai_does(client):
    raw = b'{"model": "desk", "n": 1e999}'
    response = client.post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "messages" in error["message"]


def test_a_trailing_slash_is_not_redirected_to_the_clients_host(client):
    response = client.get("/v1/models/", headers={"host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 404 and "location" not in response.headers


def test_a_lone_surrogate_is_422(client):
    raw = b'{"text": "card \\ud800"}'
    response = client.post(PREDICT, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422 and "lone surrogate" in response.json()["detail"]
    workflow = client.post(
        "/v1/workflows/desk/run", content=raw, headers={"content-type": "application/json"}
    )
    assert workflow.status_code == 422
    for text in ("card \ud800", "card \x00 now"):  # chat checks its text as the others do
        chat = {"model": "desk", "messages": [{"role": "user", "content": text}]}
        body = json.dumps(chat).encode()  # escapes both, as a client's JSON would
        answer = client.post("/v1/chat/completions", content=body,
                             headers={"content-type": "application/json"})  # fmt: skip
        assert answer.status_code == 422, answer.text
        assert "surrogate" in answer.text or "NUL" in answer.text


def test_texts_of_accepts_one_text_or_a_list():
    assert texts_of("a", None, max_items=1) == ["a"]
    assert texts_of(None, ["a", "b"], max_items=2) == ["a", "b"]
    with pytest.raises(DataError, match="at most 1 per request"):
        texts_of(None, ["a", "b"], max_items=1)
    with pytest.raises(DataError, match=r"texts\[1\] holds a NUL character"):
        texts_of(None, ["a", "b\x00c"], max_items=2)


def test_a_request_past_its_deadline_is_504(tmp_path):
    config = write_server(tmp_path, "limits: {deadline_s: 0.2}\n", gated=True)
    first: list[int] = []
    with TestClient(create_app(config)) as client:
        running = threading.Thread(target=lambda: first.append(
            client.post("/v1/skills/slow/predict", json={"text": "card"}).status_code))  # fmt: skip
        running.start()
        assert Keywords.running.wait(10)  # its batch has begun: it waits at the gate
        started = time.monotonic()
        response = client.post("/v1/skills/slow/predict", json={"text": "refund"})  # queued
        took = time.monotonic() - started
        Keywords.gate.set()
        running.join(10)
    assert response.status_code == 504
    assert "ran past its deadline" in response.json()["detail"]
    assert took < 5
    assert first == [200]  # begun before its deadline passed: answered, not thrown away


def test_a_full_queue_is_429_with_retry_after(tmp_path):
    config = write_server(tmp_path, "limits: {queue_size: 2}\n", gated=True)
    statuses: list[int] = []
    with TestClient(create_app(config)) as client:

        def call(texts: list[str]) -> None:
            statuses.append(
                client.post("/v1/skills/slow/predict", json={"texts": texts}).status_code
            )

        running = threading.Thread(target=call, args=(["card", "card"],))
        running.start()
        assert Keywords.running.wait(10)  # taken off the queue; waits at the gate
        queued = threading.Thread(target=call, args=(["refund", "refund"],))
        queued.start()
        batcher = client.app.state.serve.batchers["skill:slow"]
        deadline = time.monotonic() + 10
        while batcher.depth < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = client.post("/v1/skills/slow/predict", json={"text": "password"})
        too_many = client.post("/v1/skills/slow/predict", json={"texts": ["a", "b", "c"]})
        Keywords.gate.set()
        running.join(10)
        queued.join(10)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "the queue of skill:slow is full" in refused.json()["detail"]
    assert too_many.status_code == 422  # more than the queue ever holds: never accepted
    assert statuses == [200, 200]


def test_after_shutdown_new_work_is_503(tmp_path):
    config = load_config(write_server(tmp_path))

    async def main() -> str:
        state = ServeState.create(config)
        await asyncio.to_thread(state.load)
        await state.start()
        await state.close()
        try:
            await state.submit(state.batcher("skill", "intent"), state.calls(["x"], None)[1])
        except Exception as exc:
            return type(exc).__name__
        return "accepted"

    assert asyncio.run(main()) == "ShuttingDown"
    app = create_app(config)
    with TestClient(app) as client:
        client.portal.call(app.state.serve.batchers["skill:intent"].close, 1.0)
        response = client.post(PREDICT, json={"text": "card"})
    assert response.status_code == 503 and "shutting down" in response.json()["detail"]


def test_chat_takes_null_for_n_and_stream_as_openai_does_but_not_a_string_for_a_bool(client):
    message = [{"role": "user", "content": "where is my card"}]
    ok = client.post(
        "/v1/chat/completions",
        json={"model": "desk", "messages": message, "n": None, "stream": None},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["choices"][0]["message"]["role"] == "assistant"
    bad = client.post(
        "/v1/chat/completions", json={"model": "desk", "messages": message, "stream": "yes"}
    )
    assert bad.status_code == 422 and "stream" in bad.json()["error"]["message"]


def test_a_body_that_is_not_json_is_a_422_saying_so_with_openais_error_on_chat(client):
    plain = client.post(PREDICT, content=b"\xff", headers={"content-type": "application/json"})
    assert plain.status_code == 422 and "could not be read as JSON" in plain.json()["detail"]
    assert "error" not in plain.json()
    chat = client.post("/v1/chat/completions", content=b"\xff",
                       headers={"content-type": "application/json"})  # fmt: skip
    assert chat.status_code == 422 and "could not be read as JSON" in chat.json()["error"]["message"]


def test_a_number_or_flag_of_the_wrong_json_type_is_refused_as_the_spec_says(client):
    for bad in ({"n": True}, {"n": "1"}):
        chat = {"model": "desk", "messages": [{"role": "user", "content": "x"}], **bad}
        assert client.post("/v1/chat/completions", json=chat).status_code == 422, bad
    for bad in ("yes", 0):
        run = client.post("/v1/workflows/desk/run", json={"text": "refund", "trace": bad})
        assert run.status_code == 422, bad
