"""OpenAI-compatible backend against httpx.MockTransport (no network)."""

from __future__ import annotations

import json

import httpx
import pytest

from slmstack.backends import ChatMessage, CompletionRequest, load_backend
from slmstack.backends.openai_compat import OpenAICompatBackend
from slmstack.errors import BackendError, ConfigError

URL = "https://llm.example.test/v1"


def reply(content: str = "Hello there.", finish: str = "stop") -> dict:
    return {
        "model": "remote-1",
        "choices": [
            {"message": {"role": "assistant", "content": content}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3},
    }


def make(handler, monkeypatch, **kw) -> OpenAICompatBackend:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    return OpenAICompatBackend(
        "remote-1",
        base_url=URL,
        api_key_env="TEST_LLM_KEY",
        transport=httpx.MockTransport(handler),
        **kw,
    )


def test_request_body_headers_and_usage(monkeypatch):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=reply())

    llm = make(handler, monkeypatch)
    req = CompletionRequest(
        [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")],
        max_tokens=7,
        stop=["\n"],
        json_schema={"type": "object", "properties": {"a": {"type": "string"}}},
    )
    out = llm.complete(req)
    assert (out.text, out.model, out.finish_reason) == ("Hello there.", "remote-1", "stop")
    assert (out.usage.input_tokens, out.usage.output_tokens) == (12, 3)
    sent = seen[0]
    assert str(sent.url) == URL + "/chat/completions"
    assert sent.headers["Authorization"] == "Bearer sk-test"
    body = json.loads(sent.content)
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["max_tokens"] == 7 and body["stop"] == ["\n"] and body["temperature"] == 0.0
    assert body["response_format"]["json_schema"]["schema"]["properties"] == {
        "a": {"type": "string"}
    }


def test_length_finish_reason(monkeypatch):
    llm = make(lambda r: httpx.Response(200, json=reply("Hel", "length")), monkeypatch)
    assert llm.complete(CompletionRequest([ChatMessage("user", "x")])).finish_reason == "length"


@pytest.mark.parametrize(
    ("status", "hint"),
    [(401, "check the API key"), (404, "model name 'remote-1'"), (429, "rate limited"), (500, "")],
)
def test_http_errors_become_backend_errors(monkeypatch, status, hint):
    llm = make(lambda r: httpx.Response(status, text="nope"), monkeypatch)
    with pytest.raises(BackendError, match=rf"HTTP {status} .*{hint}.*nope"):
        llm.complete(CompletionRequest([ChatMessage("user", "x")]))


def test_malformed_body_and_network_errors(monkeypatch):
    llm = make(lambda r: httpx.Response(200, json={"unexpected": True}), monkeypatch)
    with pytest.raises(BackendError, match="not an OpenAI chat completion"):
        llm.complete(CompletionRequest([ChatMessage("user", "x")]))

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(BackendError, match="could not be reached: connection refused"):
        make(down, monkeypatch).complete(CompletionRequest([ChatMessage("user", "x")]))

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(BackendError, match="timed out.*timeout_s"):
        make(slow, monkeypatch).complete(CompletionRequest([ChatMessage("user", "x")]))


def test_never_called_without_explicit_configuration(monkeypatch):
    with pytest.raises(ConfigError, match="explicit base_url"):
        load_backend("gpt-4o-mini", runtime="openai")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        OpenAICompatBackend("gpt-4o-mini", base_url=URL)
    local = OpenAICompatBackend(
        "local",
        base_url="http://localhost:8080/v1",
        api_key_env=None,
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=reply())),
    )
    assert local.complete(CompletionRequest([ChatMessage("user", "x")])).text == "Hello there."
