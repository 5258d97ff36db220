"""The ASGI app: ``create_app(config)`` builds the FastAPI app of ``slmstack serve``.

The method:

- **Start.** The app's lifespan loads every skill and workflow (in a thread, so the event
  loop stays free), starts one micro-batcher per target, and only then turns ``/readyz``
  true. A model that fails to load fails the start: uvicorn exits non-zero with the error,
  rather than serving half of the config.
- **Every request** passes, from the outside in: metrics (so refusals are counted too),
  auth (every route but those in ``auth.public``), the body limit (413), then the router.
  Input is checked by the routes (422), the queue and the deadline by the batchers
  (429, 504). Every error the library raises on purpose maps to one status here, with its
  message as ``{"detail": ...}``; bad input is never a 500.
- **Shutdown** (SIGTERM): readiness turns false at once and, ``shutdown.grace_s``
  later, uvicorn stops accepting connections and lets the requests in flight finish
  (within ``shutdown.drain_timeout_s``); then the lifespan closes the batchers (queued
  work finishes) and writes what the ledger still buffers. Inbox packets are written
  when filed, so none wait in memory.

Example:
    >>> from slmstack.serve import create_app
    >>> app = create_app("serve.yaml")  # doctest: +SKIP
    >>> # uvicorn.run(app, port=8000)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from types import FrameType
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from slmstack.errors import (
    ConfigError,
    SlmstackError,
)
from slmstack.serve import console
from slmstack.serve.asgi import error_body, openai_error, openai_route, route_table
from slmstack.serve.auth import AuthMiddleware, bearer_security
from slmstack.serve.config import ServeConfig, load_config
from slmstack.serve.hot_path import HotPath
from slmstack.serve.http_errors import headers_of, shown, status_of
from slmstack.serve.limits import BodyLimitMiddleware
from slmstack.serve.metrics import MetricsMiddleware
from slmstack.serve.rates import SharedRateLimiter, store_url
from slmstack.serve.routes import health, inbox, metrics, openai_compat, skills, workflows
from slmstack.serve.state import ServeState

CONFIG_ENV = "SLMSTACK_SERVE_CONFIG"  # the config of each worker process (--workers > 1)
WORKERS_ENV = "SLMSTACK_SERVE_WORKERS"  # how many workers share the cores
DEFAULT_PUBLIC = ("/livez", "/readyz")  # what the committed spec documents as public
API_VERSION = "1.0"  # of the HTTP API, not of the package: the spec changes with it only
LEDGER_FLUSH_S = 1.0  # how often buffered ledger rows are written

_log = logging.getLogger("slmstack.serve")

# The status of each error the library raises on purpose; the first match wins.

_DESCRIPTION = """\
Small task-specific models and workflows over HTTP: predict with a skill, run a workflow,
chat through the OpenAI-compatible endpoint, work the escalation inbox. Every request to
a model is batched with concurrent ones; every result carries its trace and its cost.
"""


def create_app(
    config: ServeConfig | str | Path, *, workers: int = 1, state: ServeState | None = None
) -> FastAPI:
    """The FastAPI app serving ``config`` (a :class:`ServeConfig` or its YAML file).

    Models load when the app starts (its lifespan), not here; the API keys are read
    here, so a missing key variable fails at once.

    Args:
        config: the validated config, or the path of its YAML file.
        workers: how many server processes share this machine's cores (thread counts).
        state: the state to serve; default ``ServeState.create(config)``. The Ray
            engine passes its own (its skills are deployments, its keys read once).

    Raises:
        ConfigError: the config file is invalid, its keys cannot be read, or several
            workers have a rate limit and no store to share it in.
    """
    if not isinstance(config, ServeConfig):
        config = load_config(config)
    app = _build(auth=config.auth is not None, public=config.public_routes)
    _check_public(config.public_routes, app)
    app.state.serve = state if state is not None else ServeState.create(config, workers=workers)
    app.state.rate_limiter = _shared_limiter(config, workers)
    return app


def _check_public(public: Collection[str], app: FastAPI) -> None:
    """Refuse an ``auth.public`` entry that names no route (it would make nothing public)."""
    import difflib

    templates = [template for template, _ in route_table(app)]
    for entry in sorted(set(public) - set(templates)):
        close = difflib.get_close_matches(entry, templates, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"auth.public: {entry!r} is no route of this server{hint}; list route templates "
            "as the OpenAPI spec writes them, such as /livez, /readyz or "
            "/v1/skills/{name}/predict"
        )


def _shared_limiter(config: ServeConfig, workers: int) -> SharedRateLimiter | None:
    """The rate limiter the worker processes share, or ``None`` (in-process buckets).

    See :mod:`slmstack.serve.rates`: with several workers (or an explicit
    ``auth.rate_store``) a key's bucket lives in a database they all write.
    """
    auth = config.auth
    if auth is None or auth.rate_per_minute is None:
        return None
    url = store_url(auth.rate_store, config.ledger, workers)
    return None if url is None else SharedRateLimiter(url, auth.rate_per_minute)


def app_from_env() -> FastAPI:
    """The app of one worker process: the config named by ``$SLMSTACK_SERVE_CONFIG``.

    ``slmstack serve --workers N`` hands uvicorn ``slmstack.serve.app:app_from_env`` as
    a factory, since each worker process builds its own app.
    """
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(
            f"${CONFIG_ENV} is not set; start the server with `slmstack serve CONFIG`, or "
            f"set {CONFIG_ENV} to the serve config file"
        )
    return create_app(path, workers=int(os.environ.get(WORKERS_ENV, "1")))


def openapi_document(*, public: Collection[str] = DEFAULT_PUBLIC) -> dict[str, Any]:
    """The OpenAPI spec of the server with auth on and ``public`` routes open.

    It does not depend on what a config serves (names are path parameters), so it is
    committed as ``docs/openapi.json``: ``slmstack serve --openapi docs/openapi.json``.
    """
    return _build(auth=True, public=frozenset(public)).openapi()


# ---------------------------------------------------------------------- building
def _build(*, auth: bool, public: Collection[str]) -> FastAPI:
    app = FastAPI(
        title="slmstack",
        version=API_VERSION,
        description=_DESCRIPTION,
        lifespan=_lifespan,
        redoc_url=None,
        # No redirect built from the client's Host header: `/v1/models/` is a 404.
        redirect_slashes=False,
    )
    for router in (health.router, skills.router, workflows.router, openai_compat.router,
                   inbox.router, metrics.router, console.router):  # fmt: skip
        app.include_router(router)
    # Added innermost first: a request meets metrics, the console's sign-in (its cookie
    # becomes the Bearer key of /console requests), auth, the body limit, then the hot
    # path, which answers well-formed prediction requests without FastAPI's routing.
    app.add_middleware(HotPath)
    app.add_middleware(BodyLimitMiddleware, limit=_body_limit)
    app.add_middleware(AuthMiddleware)
    app.add_middleware(console.ConsoleGate)
    app.add_middleware(MetricsMiddleware)
    app.add_exception_handler(SlmstackError, _error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]

    def spec() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )  # fmt: skip
            app.openapi_schema = bearer_security(schema, public) if auth else schema
        return app.openapi_schema

    app.openapi = spec  # type: ignore[method-assign]
    return app


def _body_limit(scope: Scope) -> int:
    state: ServeState = scope["app"].state.serve
    return state.config.limits.max_body_bytes


async def _error(request: Request, exc: SlmstackError) -> JSONResponse:
    """``{"detail": message}`` with the status of the error's class (see ``http_errors``)."""
    status = status_of(exc)
    if status == 500:
        _log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
    detail = shown(exc, f"{request.method} {request.url.path}")
    body: dict[str, Any] = {"detail": detail}
    if openai_route(request.url.path):  # what OpenAI clients show
        body["error"] = openai_error(status, detail)
    return JSONResponse(body, status_code=status, headers=headers_of(exc))


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    """422 with each problem's place, message and type, and never the value sent.

    On the console's pages the same problems as a page a person reads.

    FastAPI's own answer echoes the value, which may be large or private, and fails on
    the NaN and Infinity that Python's JSON reader accepts (a 500). On the chat route the
    answer also carries OpenAI's ``error`` object, which OpenAI clients show.
    """
    if console.is_console(request.url.path):
        return console.invalid_address(request, exc.errors())
    problems = [
        {"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")),
         "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]  # fmt: skip
    kind = request.headers.get("content-type", "")
    if request.method == "POST" and not _read_as_json(kind):
        problems.insert(0, {"loc": ["header", "content-type"], "type": "content_type",
                            "msg": f"the body must be JSON: send Content-Type: "
                                   f"application/json (got {kind or 'none'!r})"})  # fmt: skip
    body: dict[str, Any] = {"detail": problems}
    if openai_route(request.url.path):
        message = "; ".join(f"{'.'.join(p['loc'][1:]) or 'body'}: {p['msg']}" for p in problems)
        body["error"] = openai_error(422, message)
    return JSONResponse(body, status_code=422)


def _read_as_json(kind: str) -> bool:
    """Whether FastAPI parsed a body of Content-Type ``kind`` as JSON (its own rule).

    Without one it does not (``strict_content_type``, FastAPI's default in recent versions).
    """
    main, _, sub = kind.split(";", 1)[0].strip().lower().partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI's answer, except a body it could not read: a 422 that says what to send."""
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        detail = (
            "the body could not be read as JSON: send UTF-8 JSON, uncompressed, with "
            "Content-Type: application/json"
        )
        body = error_body(request.scope, 422, detail)  # with OpenAI's `error` on the chat route
        return Response(body, status_code=422, media_type="application/json")
    return await http_exception_handler(request, exc)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServeState = app.state.serve
    await asyncio.to_thread(state.load)
    await state.start()
    _drain_on_sigterm(state, asyncio.get_running_loop())
    _log.info("ready: %d skills, %d workflows", len(state.skills), len(state.workflows))
    flusher = asyncio.create_task(_flush_every(state, LEDGER_FLUSH_S), name="ledger-flush")
    try:
        yield
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await state.close()
        _log.info("stopped: batchers drained, ledger written")


def _drain_on_sigterm(state: ServeState, loop: asyncio.AbstractEventLoop) -> None:
    """Turn readiness false on SIGTERM, ``shutdown.grace_s`` before the server stops.

    The server (uvicorn) has installed its own SIGTERM handler by now, which stops
    accepting connections and drains; this wraps it, so the app needs no server
    subclass and works the same with ``--workers N``. Only in the main thread (where
    signals are delivered), and only over a handler a server installed: with the
    default handler in place nothing is changed, so SIGTERM still ends the process.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    server_handler = signal.getsignal(signal.SIGTERM)
    if not callable(server_handler):
        return
    grace = state.config.shutdown.grace_s

    def on_sigterm(sig: int, frame: FrameType | None) -> None:
        first = not state.draining
        state.draining = True
        if first and grace > 0:
            _log.info("SIGTERM: not ready; stopping in %.1f s", grace)
            loop.call_soon_threadsafe(loop.call_later, grace, server_handler, sig, frame)
        else:
            server_handler(sig, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


async def _flush_every(state: ServeState, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await asyncio.to_thread(state.flush)
        except Exception:  # the rows stay buffered; a dead timer would write none until exit
            _log.exception("ledger flush failed, rows kept for the next try")


__all__ = ["CONFIG_ENV", "WORKERS_ENV", "app_from_env", "create_app", "openapi_document"]
