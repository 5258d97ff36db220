"""The server's routes, one module per concern; helpers shared by them."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from slmstack.serve.state import ServeState


def serve_state(request: Request) -> ServeState:
    """The running server's state (``app.state.serve``)."""
    state: ServeState = request.app.state.serve
    return state


def caller(request: Request) -> str | None:
    """The name of the API key that made the request (``None`` without auth)."""
    return getattr(request.state, "api_key", None)


def cost(tokens_in: int, tokens_out: int, latency_ms: float, cost_nusd: int) -> dict[str, Any]:
    """The ``cost`` object of one result (:class:`~slmstack.serve.schemas.CostOut`)."""
    return {
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "latency_ms": round(latency_ms, 3),
        "cost_nusd": cost_nusd,
        "cost_usd": cost_nusd / 1e9,
    }
