"""ASGI helpers shared by the server's middleware: which route template a request hits.

Metrics label requests by their route *template* (``/v1/skills/{name}/predict``), never
the raw path, so that a client cannot grow the number of series by sending new paths;
auth decides whether a request is public by the same template. Both run as middleware,
before the router, so the template is found here the way the router finds its route: the
first route whose pattern matches, a method mismatch (the router's 405) counting as a
match. It is matched once per request and cached in the scope, and remembered per app
by (method, root path, path), so that a repeated path costs one dict lookup instead of a
walk over the routes (about 20 µs on the server's 31 routes). The memory is bounded
(:data:`MEMO_SIZE` paths, emptied when full), since a client may send any path.

Since FastAPI 0.137, ``include_router`` no longer copies a router's routes into
``app.routes``; the routes are reached through ``fastapi.routing.iter_route_contexts``,
which gives each its full path, prefix included. (``scope["route"]`` is no help: it is
the router's own route, whose path lacks the prefix.)
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from starlette.routing import Match
from starlette.types import Scope

_route_contexts: Callable[[Any], Iterator[Any]] | None
try:
    from fastapi.routing import iter_route_contexts as _route_contexts
except ImportError:  # FastAPI < 0.137 copied every included route into app.routes
    _route_contexts = None

UNMATCHED = "unmatched"  # the label of requests that match no route (404s)
MEMO_SIZE = 4096  # paths remembered per app: the API's, with room for many names
_CACHE = "slmstack.route_template"
# app -> {(type, method, root_path, path): template}; weak, so a dropped app is freed.
_MEMO: weakref.WeakKeyDictionary[Any, dict[tuple[str, str, str, str], str | None]] = (
    weakref.WeakKeyDictionary()
)


def _routes(app: Any) -> Iterator[Any]:
    routes = app.routes
    yield from routes if _route_contexts is None else _route_contexts(routes)


def route_table(app: Any) -> list[tuple[str, frozenset[str]]]:
    """Every route of ``app`` as ``(template, methods)``, in routing order.

    Routes without methods (a mount) get ``{"GET"}``: what a probe of them would send.
    """
    out = []
    for route in _routes(app):
        path = getattr(route, "path", None)
        if isinstance(path, str):
            out.append((path, frozenset(getattr(route, "methods", None) or {"GET"})))
    return out


def route_template(scope: Scope) -> str | None:
    """The template of the route ``scope`` will be routed to; ``None`` when none matches.

    Call it before the router runs (the router rewrites the scope); the answer is cached
    in the scope, so the metrics and auth middlewares match once between them.
    """
    if _CACHE in scope:
        return scope[_CACHE]  # type: ignore[no-any-return]
    app = scope["app"]
    memo = _MEMO.get(app)
    if memo is None:
        memo = _MEMO.setdefault(app, {})
    key = (scope["type"], scope.get("method", ""), scope.get("root_path", ""), scope["path"])
    if key in memo:
        scope[_CACHE] = memo[key]
        return memo[key]
    found = _match(app, scope)
    if len(memo) >= MEMO_SIZE:
        memo.clear()
    memo[key] = scope[_CACHE] = found
    return found


def _match(app: Any, scope: Scope) -> str | None:
    """The template of the first route matching ``scope`` (a method mismatch counts)."""
    found: str | None = None
    partial: str | None = None
    for route in _routes(app):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            found = getattr(route, "path", None)
            break
        if match is Match.PARTIAL and partial is None:
            partial = getattr(route, "path", None)
    return found or partial


def error_body(scope: Scope, status: int, detail: str) -> bytes:
    """The JSON of an error a middleware answers: ``{"detail": ...}``, as FastAPI's.

    On the routes OpenAI clients call it also carries OpenAI's ``error`` object, which
    they show (an answer without it reaches the user as a bare status code).
    """
    body: dict[str, Any] = {"detail": detail}
    if openai_route(str(scope.get("path", ""))):
        body["error"] = openai_error(status, detail)
    return json.dumps(body).encode()


def openai_route(path: str) -> bool:
    """Whether OpenAI clients call ``path`` (chat completions, models).

    Its errors carry OpenAI's ``error`` object beside ``detail``.
    """
    return path.endswith(("/chat/completions", "/v1/models")) or "/v1/models/" in path


def openai_error(status: int, message: str, kind: str | None = None) -> dict[str, Any]:
    """OpenAI's ``error`` object for an answer of ``status``: what OpenAI clients show.

    ``kind`` overrides the type the status implies (the server's own error class).
    """
    if kind is None:
        kind = _OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return {"message": message, "type": kind, "code": status}


_OPENAI_TYPES = {401: "invalid_api_key", 429: "rate_limit_error"}
