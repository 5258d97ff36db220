"""``POST /v1/workflows/{name}/run``: one text or a batch, through ``Workflow.run_batch``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from slmstack.serve.routes import caller, cost, serve_state, submit_texts
from slmstack.serve.schemas import ERRORS, RunRequest, RunResponse
from slmstack.serve.state import ServeState

router = APIRouter(tags=["workflows"])


@router.post(
    "/v1/workflows/{name}/run",
    response_model=RunResponse,
    responses=ERRORS,
    summary="Run a workflow",
)
async def run(name: str, body: RunRequest, request: Request) -> JSONResponse:
    """Run workflow ``name`` on ``text`` or on each of ``texts``.

    Concurrent requests are gathered into one ``Workflow.run_batch``, so each step runs
    once per batch; each result equals what ``Workflow.run`` gives for its text: the same
    answer, decisions, escalation (and inbox packet) and trace. Its cost is its ledger
    run row's, recorded under request id ``{request_id}:{index}`` with the caller's key.
    """
    return JSONResponse(await run_results(serve_state(request), name, body, caller(request)))


async def run_results(
    state: ServeState, name: str, body: RunRequest, key: str | None
) -> dict[str, Any]:
    """The body of the answer (:class:`RunResponse`); ``key``: the caller's key name.

    Shared with :mod:`slmstack.serve.hot_path`, which answers well-formed requests
    without FastAPI's routing.
    """
    request_id, answers = await submit_texts(state, "workflow", name, body.text, body.texts, key)
    results = []
    for answer in answers:
        result = answer.result
        usage = result.usage
        out = result.to_dict(trace=body.trace)
        out["cost"] = cost(
            usage.input_tokens, usage.output_tokens, result.latency_ms, answer.cost_nusd
        )
        results.append(out)
    return {"workflow": name, "request_id": request_id, "results": results}
