"""The hot path: well-formed JSON requests to the prediction routes, answered from ASGI.

FastAPI spends about 0.3 ms on each request to ``POST /v1/skills/{name}/predict`` before
and after the route's own work: a ``Request`` object, the body parsed by ``json`` then
validated in Python mode, the dependencies solved, an exit stack, the response sent back
through the exception layers (a profile on 2 cores, AMD EPYC; all the middlewares together
cost 0.05 ms). For a skill whose prediction costs about a millisecond that is a large
share of the request. Over HTTP this path saves about 0.2 ms a request
(``bench/serve_latency.py``, which serves the same app without it beside).

So :class:`HotPath`, the innermost middleware, answers the two prediction routes itself
when the request is on the happy path: method ``POST``, ``Content-Type:
application/json`` and a body that pydantic's JSON parser validates against the route's
own request model. It calls the same handler as the FastAPI route
(:func:`slmstack.serve.routes.skills.predict_results`,
:func:`slmstack.serve.routes.workflows.run_results`) and answers with the same
``JSONResponse``. An error the handler raises is answered by the handler the app
registered for its class, as FastAPI's exception layer would; any other exception goes
on to the server's 500, as before.

Everything else goes on to FastAPI with the body replayed: another method, another
content type or none, a body that does not parse (pydantic's parser is the stricter of
the two: it refuses a lone surrogate escape or a byte-order mark, which Python's ``json``
reads) or does not validate. So every refusal is FastAPI's own, word for word, and the
routes stay declared in FastAPI for the OpenAPI spec. Auth, the body limit and metrics
are outside this middleware and see every request as before.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slmstack.serve.asgi import route_template
from slmstack.serve.routes.skills import predict_results
from slmstack.serve.routes.workflows import run_results
from slmstack.serve.schemas import PredictRequest, RunRequest
from slmstack.serve.state import ServeState

Handler = Callable[[ServeState, str, Any, "str | None"], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class HotRoute:
    """A route the hot path answers: its request model and the handler behind it."""

    model: type[BaseModel]
    handle: Handler

    def parse(self, message: Message) -> BaseModel | None:
        """The request model read from the body, or ``None``: FastAPI is to answer it."""
        if message["type"] != "http.request" or message.get("more_body", False):
            return None
        try:
            return self.model.model_validate_json(message.get("body", b""))
        except ValidationError:
            return None


HOT_ROUTES: dict[str, HotRoute] = {
    "/v1/skills/{name}/predict": HotRoute(PredictRequest, predict_results),
    "/v1/workflows/{name}/run": HotRoute(RunRequest, run_results),
}


class HotPath:
    """Answer well-formed requests to :data:`HOT_ROUTES` without FastAPI's routing.

    Install it innermost (inside auth and the body limit: it expects the body whole, in
    one message, as :class:`~slmstack.serve.limits.BodyLimitMiddleware` hands it on).
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request here when it is on the happy path; else pass it on."""
        route = _hot_route(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        message = await receive()
        body = route.parse(message)
        if body is None:
            await self.app(scope, _replay(message, receive), send)
            return
        name = scope["path"].rsplit("/", 2)[1]
        state: ServeState = scope["app"].state.serve
        caller = scope.get("state", {}).get("api_key")
        try:
            payload = await route.handle(state, name, body, caller)
        except Exception as exc:
            handler = _handler_for(scope["app"], exc)
            if handler is None:
                raise
            response = handler(Request(scope, receive), exc)
            if inspect.isawaitable(response):
                response = await response
            await response(scope, receive, send)
            return
        await JSONResponse(payload)(scope, receive, send)


def _hot_route(scope: Scope) -> HotRoute | None:
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    route = HOT_ROUTES.get(route_template(scope) or "")
    if route is None:
        return None
    for key, value in scope["headers"]:
        if key == b"content-type":
            return route if _is_json(value) else None
    return None  # no content type: FastAPI decides how to read it


def _is_json(value: bytes) -> bool:
    kind = value.split(b";", 1)[0].strip().lower()
    return kind == b"application/json"


def _replay(message: Message, receive: Receive) -> Receive:
    """``receive`` that first hands back the message already read."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return message
        return await receive()

    return again


def _handler_for(app: Any, exc: Exception) -> Any:
    """The exception handler ``app`` registered for ``exc``'s class (nearest in its MRO)."""
    handlers = getattr(app, "exception_handlers", {})
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


__all__ = ["HOT_ROUTES", "HotPath", "HotRoute"]
