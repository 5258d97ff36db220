"""The server's routes, one module per concern; helpers shared by them."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from slmstack.serve.state import ServeState


def serve_state(request: Request) -> ServeState:
    """The running server's state (``app.state.serve``)."""
    state: ServeState = request.app.state.serve
    return state


async def submit_texts(
    state: ServeState, kind: str, name: str, text: str | None, texts: list[str] | None,
    key: str | None,
) -> tuple[str, list[Any]]:  # fmt: skip
    """The new request id and the answers of ``text`` or ``texts`` from ``name``'s batcher.

    The texts are checked first; ledger keys are ``ID:INDEX``, with the caller's ``key``.
    """
    from slmstack.serve.limits import texts_of

    batcher = state.batcher(kind, name)
    checked = texts_of(text, texts, max_items=state.config.limits.max_items)
    request_id, calls = state.calls(checked, key)
    return request_id, await state.submit(batcher, calls)


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
