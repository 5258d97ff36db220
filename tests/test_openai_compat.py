"""OpenAI-compatible backend: what is sent and what comes back, over httpx2.MockTransport."""

from __future__ import annotations

import json

import httpx2
import pytest

from slmstack.backends import ChatMessage, CompletionRequest, load_backend
from slmstack.backends.openai_compat import OpenAICompatBackend
from slmstack.errors import BackendError, ConfigError

URL = "https://llm.example.test/v1"


def reply(content: str = "Hello there.", finish: str = "stop", **extra) -> dict:
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "remote-1-2025",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish,
                **extra,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


def make(handler, monkeypatch, **kw) -> OpenAICompatBackend:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    return OpenAICompatBackend(
        "remote-1",
        base_url=URL,
        api_key_env="TEST_LLM_KEY",
        transport=httpx2.MockTransport(handler),
        sleep=lambda s: None,
        **kw,
    )


def ask(text: str = "x", **kw) -> CompletionRequest:
    return CompletionRequest([ChatMessage("user", text)], **kw)


def test_request_body_headers_and_usage(monkeypatch):
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=reply())

    llm = make(handler, monkeypatch, timeout_s=7)
    req = CompletionRequest(
        [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")],
        max_tokens=7,
        stop=["\n"],
        json_schema={"type": "object", "properties": {"a": {"type": "string"}}},
    )
    out = llm.complete(req)
    # the configured name (the one a price table knows), not the server's dated variant
    assert (out.text, out.model, out.finish_reason) == ("Hello there.", "remote-1", "stop")
    assert (out.usage.input_tokens, out.usage.output_tokens) == (12, 3)
    assert (out.endpoint, out.failed_over, out.usage_source) == (URL, (), "backend")
    assert out.logprobs is None and out.usage.latency_ms > 0
    sent = seen[0]
    assert str(sent.url) == URL + "/chat/completions"
    assert sent.headers["Authorization"] == "Bearer sk-test"
    assert sent.headers["x-stainless-retry-count"] == "0"
    body = json.loads(sent.content)
    assert body["model"] == "remote-1"
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["max_tokens"] == 7 and body["stop"] == ["\n"] and body["temperature"] == 0.0
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "output",
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
    }
    assert "logprobs" not in body


def test_json_object_format_for_llama_cpp_python_server(monkeypatch):
    seen: list[dict] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(json.loads(request.content))
        return httpx2.Response(200, json=reply('{"a": "b"}'))

    llm = make(handler, monkeypatch, json_format="json_object")
    llm.complete(ask(json_schema={"type": "object"}))
    assert seen[0]["response_format"] == {"type": "json_object", "schema": {"type": "object"}}
    with pytest.raises(ConfigError, match="json_format must be 'json_schema' or 'json_object'"):
        make(handler, monkeypatch, json_format="grammar")


def test_logprobs_are_requested_and_returned(monkeypatch):
    seen: list[dict] = []
    token = {
        "token": "yes",
        "logprob": -0.1,
        "bytes": None,
        "top_logprobs": [
            {"token": "yes", "logprob": -0.1, "bytes": None},
            {"token": "no", "logprob": -2.4, "bytes": None},
        ],
    }

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(json.loads(request.content))
        return httpx2.Response(200, json=reply("yes", logprobs={"content": [token]}))

    out = make(handler, monkeypatch).complete(ask(logprobs=2))
    assert seen[0]["logprobs"] is True and seen[0]["top_logprobs"] == 2
    assert len(out.logprobs) == 1
    assert (out.logprobs[0].token, out.logprobs[0].logprob) == ("yes", -0.1)
    assert dict(out.logprobs[0].top) == {"yes": -0.1, "no": -2.4}

    # a server that ignores the option: None, so the caller knows to use another confidence
    plain = make(lambda r: httpx2.Response(200, json=reply("yes")), monkeypatch)
    assert plain.complete(ask(logprobs=2)).logprobs is None


def test_length_finish_reason(monkeypatch):
    llm = make(lambda r: httpx2.Response(200, json=reply("Hel", "length")), monkeypatch)
    assert llm.complete(ask()).finish_reason == "length"


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (400, "json_format='json_object'"),
        (401, "check the API key in TEST_LLM_KEY"),
        (404, "model name 'remote-1'"),
        (422, "refused the request's fields"),
    ],
)
def test_client_errors_are_raised_at_once_with_a_hint(monkeypatch, status, hint):
    calls: list[int] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(1)
        return httpx2.Response(status, text="nope")

    llm = make(handler, monkeypatch, retries=3)
    with pytest.raises(BackendError, match=rf"HTTP {status} \(.*{hint}.*\): nope"):
        llm.complete(ask())
    assert len(calls) == 1  # the request's fault: retrying would not help


def test_refusal_is_an_error(monkeypatch):
    body = reply()
    body["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": "no way"}
    llm = make(lambda r: httpx2.Response(200, json=body), monkeypatch)
    with pytest.raises(BackendError, match="remote-1 at .* refused to answer: no way"):
        llm.complete(ask())


@pytest.mark.parametrize("content", [None, "The first half of"])
def test_a_content_filter_stop_is_an_error_not_an_answer(monkeypatch, content):
    # Hosted APIs withhold or cut an answer with finish_reason "content_filter": neither
    # an empty text nor a cut one may pass as a complete answer.
    body = reply(finish="content_filter")
    body["choices"][0]["message"] = {"role": "assistant", "content": content}
    llm = make(lambda r: httpx2.Response(200, json=body), monkeypatch)
    with pytest.raises(BackendError, match="remote-1 at .*content filter withheld the answer"):
        llm.complete(ask())


def test_never_called_without_explicit_configuration(monkeypatch):
    with pytest.raises(ConfigError, match="explicit base_url"):
        load_backend("gpt-4o-mini", runtime="openai")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set .*api_key_env=None"):
        OpenAICompatBackend("gpt-4o-mini", base_url=URL)
    with pytest.raises(ConfigError, match="timeout_s must be a number of seconds > 0, got 0"):
        OpenAICompatBackend("m", base_url=URL, api_key_env=None, timeout_s=0)
    with pytest.raises(ConfigError, match="retries must be an int >= 0, got -1"):
        OpenAICompatBackend("m", base_url=URL, api_key_env=None, retries=-1)
    with pytest.raises(ConfigError, match="max_concurrency must be None or an int >= 1, got 0"):
        OpenAICompatBackend("m", base_url=URL, api_key_env=None, max_concurrency=0)


def test_local_server_gets_no_key_even_when_one_is_exported(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=reply())

    local = OpenAICompatBackend(
        "local",
        base_url="http://localhost:8080/v1",
        api_key_env=None,
        transport=httpx2.MockTransport(handler),
    )
    assert local.complete(ask()).text == "Hello there."
    assert "authorization" not in seen[0].headers


def test_load_backend_passes_every_option_through(monkeypatch):
    llm = load_backend(
        "m",
        runtime="openai",
        shared=False,
        base_url=URL + "/",
        api_key_env=None,
        timeout_s=3,
        retries=5,
        backoff_s=0.25,
        max_wait_s=9,
        max_concurrency=4,
        json_format="json_object",
        tokenizer=lambda text: 42,
        fallbacks=[{"model": "m2", "base_url": "http://b.test/v1", "api_key_env": None}],
    )
    assert isinstance(llm, OpenAICompatBackend)
    assert (llm.base_url, llm.timeout_s, llm.max_concurrency, llm.json_format) == (
        URL,
        3.0,
        4,
        "json_object",
    )
    assert (llm.policy.retries, llm.policy.backoff_s, llm.policy.max_wait_s) == (5, 0.25, 9)
    assert llm.count_tokens("anything") == 42
    assert [f.where for f in llm.fallbacks] == ["m2 at http://b.test/v1"]
