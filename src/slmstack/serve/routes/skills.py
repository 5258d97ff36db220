"""``POST /v1/skills/{name}/predict``: one text or a batch, through the skill's batcher."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from slmstack.serve.routes import caller, cost, serve_state, submit_texts
from slmstack.serve.schemas import ERRORS, PredictRequest, PredictResponse
from slmstack.serve.state import ServeState

router = APIRouter(tags=["skills"])


@router.post(
    "/v1/skills/{name}/predict",
    response_model=PredictResponse,
    responses=ERRORS,
    summary="Predict with a skill",
)
async def predict(name: str, body: PredictRequest, request: Request) -> JSONResponse:
    """Run skill ``name`` on ``text`` or on each of ``texts``.

    Concurrent requests to one skill are batched together (``batching:`` in the config),
    so a batch here and many single requests cost about the same per text. Each text's
    prediction comes with its share of the batch's time and its cost, as recorded in the
    ledger under request id ``{request_id}:{index}``.
    """
    return JSONResponse(await predict_results(serve_state(request), name, body, caller(request)))


async def predict_results(
    state: ServeState, name: str, body: PredictRequest, key: str | None
) -> dict[str, Any]:
    """The body of the answer (:class:`PredictResponse`); ``key``: the caller's key name.

    Shared with :mod:`slmstack.serve.hot_path`, which answers well-formed requests
    without FastAPI's routing.
    """
    request_id, answers = await submit_texts(state, "skill", name, body.text, body.texts, key)
    results = []
    for answer in answers:
        usage = answer.prediction.usage
        spent = cost(usage.input_tokens, usage.output_tokens, answer.latency_ms, answer.cost_nusd)
        results.append({"prediction": answer.prediction.to_dict(), "cost": spent})
    return {"skill": name, "request_id": request_id, "results": results}
