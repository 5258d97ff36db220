"""A fake OpenAI-compatible upstream for the proxy tests: a tiny ASGI app, no network.

It answers ``POST /v1/chat/completions`` (JSON, or SSE when ``stream`` is true, with a
usage chunk when ``stream_options.include_usage`` is) and ``GET /v1/models``, keeps each
request it received (method, path, headers, body bytes) and answers with
``answer(last user text)``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from slmstack.costs import Ledger, load_prices
from slmstack.proxy import ProxyApp, ProxyConfig, Recorder, TrafficStore
from slmstack.proxy.recording import Pricing


async def read_body(receive: Any) -> bytes:
    """The whole request body an ASGI app receives."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


@contextlib.contextmanager
def serving(*apps: tuple[Any, int]) -> Iterator[None]:
    """Each ``(ASGI app, port)`` served on loopback by uvicorn in a thread, while inside."""
    import uvicorn

    servers = [uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
               for app, port in apps]  # fmt: skip
    threads = [threading.Thread(target=s.run, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 20
        while not all(s.started for s in servers):
            assert time.monotonic() < deadline, "servers did not start"
            time.sleep(0.02)
        yield
    finally:
        for s in servers:
            s.should_exit = True
        for t in threads:
            t.join(10)


class FakeUpstream:
    """An OpenAI-compatible ASGI app that records what it was sent."""

    def __init__(
        self,
        answer: Callable[[str], str] = lambda text: "card_arrival",
        *,
        usage: bool = True,
        status: int = 200,
    ):
        self.answer = answer
        self.usage = usage
        self.status = status
        self.received: list[dict[str, Any]] = []
        self.sent: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.received.append(
            {
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"],
                "body": body,
                "headers": dict(scope["headers"]),
            }
        )
        if scope["path"] == "/v1/models":
            await self._send(
                send, 200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]}
            )
            return
        if self.status != 200:
            await self._send(send, self.status, {"error": {"message": "rate limited", "type": "x"}})
            return
        request = json.loads(body)
        text = request["messages"][-1]["content"]
        reply = self.answer(text)
        usage = {
            "prompt_tokens": 3 * len(text.split()),
            "completion_tokens": 2,
            "total_tokens": 3 * len(text.split()) + 2,
        }
        if request.get("stream"):
            await self._stream(send, request, reply, usage)
            return
        data = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": request["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply},
                    "finish_reason": "stop",
                }
            ],
        }
        if self.usage:
            data["usage"] = usage
        await self._send(send, 200, data)

    async def _send(self, send: Any, status: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.sent.append(body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"x-upstream", b"fake"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _stream(
        self, send: Any, request: dict[str, Any], reply: str, usage: dict[str, int]
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        words = reply.split(" ")
        events = []
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            events.append(
                {
                    "id": "chatcmpl-2",
                    "object": "chat.completion.chunk",
                    "model": request["model"],
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                }
            )
        events.append(
            {
                "id": "chatcmpl-2",
                "object": "chat.completion.chunk",
                "model": request["model"],
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
        )
        if (request.get("stream_options") or {}).get("include_usage"):
            events.append(
                {
                    "id": "chatcmpl-2",
                    "object": "chat.completion.chunk",
                    "model": request["model"],
                    "choices": [],
                    "usage": usage,
                }
            )
        chunks = [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]
        self.sent.append(b"".join(chunks))
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def make_proxy(
    tmp_path,
    upstream: FakeUpstream,
    *,
    masker=None,
    price_as=None,
    count_tokens=None,
    prices=None,
    transport=None,
    shadow=None,
    shadow_store=None,
    serving=None,
    **config: Any,
) -> ProxyApp:
    """A proxy recording to a SQLite file in ``tmp_path``, forwarding to ``upstream`` in process."""
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    cfg = ProxyConfig(upstream="http://upstream.test/v1", ledger=url, **config)
    recorder = Recorder(
        TrafficStore(url),
        Ledger(url),
        pricing=Pricing(load_prices(prices), price_as, count_tokens),
        masker=masker,
        shadow=shadow,
        shadow_store=shadow_store,
        flush_every_s=0.01,
    )
    transport = transport or httpx.ASGITransport(app=upstream)
    return ProxyApp(cfg, recorder, serving=serving, transport=transport)


def client(proxy: ProxyApp) -> httpx.AsyncClient:
    """An async client talking to ``proxy`` in process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy), base_url="http://proxy.test")
