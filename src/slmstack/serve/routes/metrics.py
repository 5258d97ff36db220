"""``GET /metrics``: the Prometheus page, behind the same keys as every other route."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """The Prometheus text page of the server.

    Request counts and latencies per route, step times, batch sizes, queue depths,
    escalations, tokens and cost. Queue depths are read from the batchers at scrape time,
    so they are current.
    """
    serve = request.app.state.serve
    for target, batcher in serve.batchers.items():
        serve.metrics.set_queue_depth(target, batcher.depth)
    body, content_type = serve.metrics.render()
    return Response(content=body, media_type=content_type)
