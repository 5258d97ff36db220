"""The recording proxy: an ASGI app that forwards OpenAI calls unchanged and records them.

The method: a bare ASGI app (no framework routing or validation between the client and
the upstream, which is the proxy's whole latency budget) over one pooled
``httpx.AsyncClient``. Every request under ``/v1/`` is forwarded to the upstream with its
method, path, query, headers and body unchanged, except the hop-by-hop headers, the
``Authorization`` header when the operator gives an upstream key, and
``Accept-Encoding: identity`` so that the answer can be read for the record. The answer
comes back with its status and headers; a stream (``text/event-stream``) is passed on
chunk by chunk as it arrives, so the first token is not delayed.

``POST /v1/chat/completions`` is also recorded: the bytes of both sides go to the
:class:`~slmstack.proxy.recorder.Recorder`'s queue after the answer is sent, and are
parsed, masked, priced and written by its thread, never on the request path.
``GET /healthz`` answers the recorder's counts.

A call of a task promoted to its student is answered by the student when it is
confident enough (:mod:`slmstack.proxy.serving`); every proxied answer says who answered
in its ``x-slmstack-answered-by`` header (``llm`` or ``student``).

Example:
    >>> from slmstack.proxy import ProxyConfig, create_proxy_app
    >>> app = create_proxy_app(ProxyConfig(upstream="http://127.0.0.1:8081/v1"))
    ... # doctest: +SKIP
    >>> # uvicorn.run(app, port=8080); clients use base_url="http://127.0.0.1:8080/v1"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from typing import Any

from slmstack.errors import ConfigError, MissingDependencyError
from slmstack.proxy.config import ProxyConfig
from slmstack.proxy.exchange import Exchange
from slmstack.proxy.recorder import Recorder
from slmstack.proxy.recording import Route
from slmstack.proxy.serving import HEADER, Serving, build_serving

_log = logging.getLogger("slmstack.proxy")
_HOP = frozenset({b"host", b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                  b"transfer-encoding", b"upgrade", b"proxy-authorization", b"content-length",
                  b"accept-encoding"})  # fmt: skip
_ANSWER_DROP = _HOP | {b"date", b"server"}  # the proxy's server sends its own: not two of each
_RECORDED = "/chat/completions"
_LLM = (HEADER, b"llm")

Scope = dict[str, Any]


class ProxyApp:
    """The ASGI app of ``slmstack proxy``.

    Args:
        config: the settings.
        recorder: where exchanges are recorded (see :func:`build_recorder`).
        serving: the promoted tasks' students (see :func:`~slmstack.proxy.serving.build_serving`);
            ``None``: every call goes to the upstream.
        transport: the httpx transport to the upstream (tests inject an ASGI app).
    """

    def __init__(self, config: ProxyConfig, recorder: Recorder, *,
                 serving: Serving | None = None, transport: Any = None):  # fmt: skip
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError("httpx", "proxy", "slmstack proxy") from exc
        self.config = config
        self.recorder = recorder
        self.serving = serving
        # POSTs forwarded but not recorded (embeddings, the Responses API): counted, and
        # each path warned about once, since their spend is not in the ledger.
        self.unrecorded: dict[str, int] = {}
        if serving is not None:
            recorder.listen(serving.audited)
        self._upstream_auth: bytes | None = None
        if config.upstream_key_env:
            key = os.environ.get(config.upstream_key_env, "").strip()
            if not key:
                raise ConfigError(
                    f"${config.upstream_key_env} (--upstream-key-env) is not set; export the "
                    "upstream's API key in it, or leave the option out to forward the "
                    "client's own Authorization header"
                )
            self._upstream_auth = f"Bearer {key}".encode()
        limits = httpx.Limits(max_connections=config.max_connections,
                              max_keepalive_connections=config.max_connections)  # fmt: skip
        self._client = httpx.AsyncClient(
            transport=transport, limits=limits,
            timeout=httpx.Timeout(config.timeout_s, connect=10.0), follow_redirects=False,
        )  # fmt: skip
        self._httpx = httpx

    # ------------------------------------------------------------------ life
    async def start(self) -> None:
        """Start recording (and serving the promoted tasks)."""
        self.recorder.start()
        if self.serving is not None:
            await self.serving.start(self._fetch, self.recorder.submit)

    async def close(self) -> None:
        """Finish the audits, close the upstream connections, then record what is queued."""
        if self.serving is not None:
            await self.serving.close()
        await self._client.aclose()
        self.recorder.close()

    async def __aenter__(self) -> ProxyApp:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Forward one HTTP request (or run the lifespan protocol)."""
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Any, send: Any) -> None:
        started, t0 = time.time(), time.perf_counter()
        path: str = scope["path"]
        if not path.startswith("/v1/"):
            if path == "/healthz":
                r = self.recorder
                stats: dict[str, Any] = {
                    "status": "ok" if r.write_error is None else "recording_failing",
                    "recorded": r.recorded, "dropped": r.dropped, "failed": r.failed,
                    "pending": r.pending, "write_error": r.write_error,
                    "unrecorded": dict(self.unrecorded),
                }  # fmt: skip
                if self.serving is not None:
                    stats["serving"] = self.serving.stats()
                await _json(send, 200, stats)
            else:
                hint = f"{path} is not proxied; the proxy forwards /v1/... to the upstream"
                await _json(send, 404, _error(hint, "not_found", 404))
            return
        body = await _body(receive)
        url = self.config.upstream + path[3:]
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        headers, authorization = self._headers(scope["headers"])
        recorded = scope["method"] == "POST" and path.rstrip("/").endswith(_RECORDED)
        if scope["method"] == "POST" and not recorded:
            self._unrecorded(path)
        route: Route | None = None
        if recorded and self.serving is not None and self.serving.active:
            route = await self.serving.answer(path, body, headers, authorization, started, t0,
                                              send)  # fmt: skip
            if route is not None and route.role == "student":
                return
        request = self._client.build_request(scope["method"], url, headers=headers, content=body)
        try:
            response = await self._client.send(request, stream=True)
        except self._httpx.HTTPError as exc:
            status = 504 if isinstance(exc, self._httpx.TimeoutException) else 502
            message = (
                f"the upstream {self.config.upstream} did not answer: {type(exc).__name__}: "
                f"{exc}; check that it runs and --upstream"
            )
            await _json(send, status, _error(message, "upstream_unreachable", status), _LLM)
            if recorded:
                ms = (time.perf_counter() - t0) * 1000
                self.recorder.submit(Exchange(path, body, b"", 0, "", "", authorization,
                                              started, ms, ms, message), route)  # fmt: skip
            return
        out = [(k, v) for k, v in response.headers.raw if k.lower() not in _ANSWER_DROP]
        out.append(_LLM)
        content_type = response.headers.get("content-type", "")
        encoding = response.headers.get("content-encoding", "")
        chunks: list[bytes] = []
        error = None
        ttfb = 0.0
        begun = False  # whether the answer's status went to the client
        watcher = asyncio.create_task(_disconnected(receive))  # uvicorn drops sends after it
        try:
            if content_type.startswith("text/event-stream"):
                begun = True
                await send({"type": "http.response.start", "status": response.status_code,
                            "headers": out})  # fmt: skip
                async for chunk in response.aiter_raw():
                    if not ttfb:
                        ttfb = (time.perf_counter() - t0) * 1000
                    if recorded:
                        chunks.append(chunk)
                    if watcher.done():  # stop paying the LLM for a stream nobody reads
                        error = "the client left before the end of the stream"
                        break
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                reading = asyncio.ensure_future(_raw(response))
                await asyncio.wait({reading, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():
                    reading.cancel()
                    raise _ClientLeft("the client left before the upstream answered")
                content = reading.result()
                chunks.append(content)
                out.append((b"content-length", str(len(content)).encode()))
                begun = True
                await send({"type": "http.response.start", "status": response.status_code,
                            "headers": out})  # fmt: skip
                ttfb = (time.perf_counter() - t0) * 1000
                await send({"type": "http.response.body", "body": content})
        except _ClientLeft as exc:
            error = str(exc)
        except (OSError, self._httpx.HTTPError) as exc:  # the client left, or the upstream broke
            error = f"the exchange broke off: {type(exc).__name__}: {exc}"
            _log.warning("%s %s: %s", scope["method"], path, error)
            if not begun:  # the upstream broke before its answer: say so, not a bare 500
                status = 504 if isinstance(exc, self._httpx.TimeoutException) else 502
                message = (f"the upstream {self.config.upstream} broke off its answer: "
                           f"{type(exc).__name__}: {exc}; retry the call")  # fmt: skip
                with contextlib.suppress(OSError):  # the client may be gone too
                    await _json(send, status, _error(message, "upstream_error", status), _LLM)
        finally:
            watcher.cancel()
            await response.aclose()
        if recorded:
            self.recorder.submit(Exchange(
                path, body, b"".join(chunks), response.status_code, content_type, encoding,
                authorization, started, (time.perf_counter() - t0) * 1000, ttfb, error,
            ), route)  # fmt: skip

    def _unrecorded(self, path: str) -> None:
        if path not in self.unrecorded:
            _log.warning("POST %s is forwarded but not recorded (the proxy records chat "
                         "completions only): its calls and their cost are not in the ledger; "
                         "/healthz counts them", path)  # fmt: skip
        self.unrecorded[path] = self.unrecorded.get(path, 0) + 1

    async def _fetch(self, path: str, headers: list[tuple[bytes, bytes]],
                     body: bytes) -> tuple[int, str, bytes, str | None]:  # fmt: skip
        """POST ``body`` upstream (an audit): ``(status, content type, body, error)``."""
        url = self.config.upstream + path[3:]
        try:
            response = await self._client.post(url, headers=headers, content=body)
        except self._httpx.HTTPError as exc:
            return 0, "", b"", f"the upstream did not answer: {type(exc).__name__}: {exc}"
        kind = response.headers.get("content-type", "")
        return response.status_code, kind, response.content, None

    def _headers(self, raw: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], Any]:
        """The headers to send upstream, and the client's Authorization (for its fingerprint)."""
        headers = [(b"accept-encoding", b"identity")]
        authorization = None
        for name, value in raw:
            if name in _HOP:
                continue
            if name == b"authorization":
                authorization = value.decode("latin-1")
                if self._upstream_auth is not None:
                    continue
            headers.append((name, value))
        if self._upstream_auth is not None:
            headers.append((b"authorization", self._upstream_auth))
        return headers, authorization


class _ClientLeft(Exception):
    """The client closed its connection before the answer was complete."""


async def _disconnected(receive: Any) -> None:
    """Return once the client has closed its connection (after the request body)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _raw(response: Any) -> bytes:
    """The answer's bytes as sent, compressed if the upstream compressed them anyway.

    ``aread`` would decode them, while the client is told the upstream's ``content-encoding``.
    """
    return b"".join([chunk async for chunk in response.aiter_raw()])


async def _body(receive: Any) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(parts)


def _error(message: str, kind: str, code: int) -> dict[str, Any]:
    """OpenAI's error shape, so that clients show the message."""
    return {"error": {"message": message, "type": kind, "code": code}}


async def _json(send: Any, status: int, data: dict[str, Any], *extra: tuple[bytes, bytes]) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *extra]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_recorder(config: ProxyConfig) -> Recorder:
    """The recorder ``config`` describes: its database, prices, token counter and masker."""
    from slmstack.costs.ledger import Ledger
    from slmstack.costs.prices import load_prices
    from slmstack.proxy.masking import Masker, key_from_env
    from slmstack.proxy.recording import Pricing
    from slmstack.proxy.traffic import TrafficStore

    prices = load_prices(config.prices)
    if config.price_as is not None:
        prices.model(config.price_as)  # an unknown --price-as fails now, with the fix
    counter = None
    if config.tokenizer is not None:
        from slmstack.backends.token_count import load_token_counter

        counter = load_token_counter(config.tokenizer)
    masker = None
    if config.mask:
        tagger = None
        if config.mask_tagger is not None:
            from slmstack.skills.base import load

            tagger = load(config.mask_tagger)
        masker = Masker(key_from_env(config.mask_key_env), tagger=tagger)
    elif config.mask_tagger is not None:
        raise ConfigError("--mask-tagger finds names to mask; add --mask to turn masking on")
    store = TrafficStore(config.ledger)
    ledger = Ledger(config.ledger, batch_size=config.batch_size)
    shadow, shadow_store = None, None
    if config.shadow:
        from slmstack.proxy.promote import ShadowStore
        from slmstack.proxy.shadow import load_shadow

        if config.tasks is None:
            raise ConfigError(
                "shadowing needs the tasks' templates: pass --tasks tasks.json (from "
                "`slmstack discover --json > tasks.json`)"
            )
        shadow = load_shadow(config.tasks, config.shadow)
        shadow_store = ShadowStore(config.ledger)
    return Recorder(
        store, ledger, pricing=Pricing(prices, config.price_as, counter), masker=masker,
        shadow=shadow, shadow_store=shadow_store,
        batch_size=config.batch_size, flush_every_s=config.flush_every_s,
        max_queue=config.max_queue,
    )  # fmt: skip


def create_proxy_app(config: ProxyConfig, *, transport: Any = None) -> ProxyApp:
    """The proxy app for ``config``, its recorder built from it (see :func:`build_recorder`).

    Raises:
        ConfigError: a key variable is unset, the masking key is malformed, ``price_as``
            has no price, the ledger URL cannot be opened, or a task is promoted in it
            without a student (``--shadow``).
    """
    recorder = build_recorder(config)
    return ProxyApp(config, recorder, serving=build_serving(config, recorder), transport=transport)


__all__ = ["ProxyApp", "build_recorder", "create_proxy_app"]
