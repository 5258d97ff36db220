"""A small FastAPI app carrying the server's auth, metrics and inbox pieces, for their tests.

It stands in for ``create_app`` where a test needs only these pieces and no models: the
state object has the fields the middleware and routes read (``keys``, ``config.auth``,
``metrics``, ``inbox``, ``batchers``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI, Request

from slmstack.serve.auth import ApiKeys, AuthMiddleware
from slmstack.serve.metrics import Metrics, MetricsMiddleware
from slmstack.serve.routes.inbox import router as inbox_router
from slmstack.serve.routes.metrics import router as metrics_router

KEY = "k-ops-0123456789abcdef"  # test keys: long enough to pass the length check
OTHER_KEY = "k-bot-0123456789abcdef"
WRONG_KEY = "k-nope-0123456789abcdef"


@dataclass
class FakeBatcher:
    depth: int = 0


@dataclass
class FakeState:
    keys: ApiKeys | None = None
    config: Any = None
    metrics: Metrics = field(default_factory=Metrics)
    inbox: Any = None
    batchers: dict[str, FakeBatcher] = field(default_factory=dict)


def pieces_app(
    *,
    keys: ApiKeys | None = None,
    public: tuple[str, ...] = (),
    rate_per_minute: float | None = None,
    inbox: Any = None,
    clock: Callable[[], float] | None = None,
    act_for_others: tuple[str, ...] = (),
) -> FastAPI:
    """An app with the inbox and metrics routers, a few stand-in routes and both middlewares."""
    app = FastAPI()
    auth = None if keys is None else SimpleNamespace(
        public=public, rate_per_minute=rate_per_minute, inbox_act_for_others=act_for_others
    )  # fmt: skip
    app.state.serve = FakeState(keys=keys, config=SimpleNamespace(auth=auth), inbox=inbox)

    @app.get("/livez")
    def livez() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/whoami")
    def whoami(request: Request) -> dict[str, str | None]:
        return {"key": request.state.api_key}

    @app.post("/v1/skills/{name}/predict")
    def predict(name: str) -> dict[str, str]:
        return {"skill": name}

    app.include_router(inbox_router)
    app.include_router(metrics_router)
    # Added last = outermost: metrics see the requests auth refuses too.
    if clock is None:
        app.add_middleware(AuthMiddleware)
    else:
        app.add_middleware(AuthMiddleware, clock=clock)
    app.add_middleware(MetricsMiddleware)
    return app


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
