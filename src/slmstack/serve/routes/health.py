"""``GET /livez``, ``GET /readyz``, ``GET /v1/models`` and ``GET /v1/models/{model}``.

The probes answer ``HEAD`` too (status only), as some load balancers send it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from slmstack.errors import NotServed
from slmstack.serve.routes import serve_state
from slmstack.serve.schemas import ErrorOut, Liveness, ModelCard, ModelList, Readiness
from slmstack.serve.state import ServeState

router = APIRouter()


@router.head("/livez", include_in_schema=False)
@router.get("/livez", response_model=Liveness, tags=["operations"], summary="Liveness")
async def livez() -> Liveness:
    """200 while the process answers: restart it when this fails."""
    return Liveness()


@router.head("/readyz", include_in_schema=False)
@router.get(
    "/readyz",
    response_model=Readiness,
    tags=["operations"],
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "Shutting down (or still loading)."}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 once every skill and workflow is loaded; 503 once a shutdown has begun.

    `slmstack serve` opens its port only after every model has loaded, so while it loads
    a probe's connection is refused (give a Kubernetes pod a startup probe long enough
    for the models). After SIGTERM it answers 503, so that a load balancer sends no new
    requests while the requests in flight finish.
    """
    state = serve_state(request)
    ready = state.ready and not state.draining
    body = Readiness(ready=ready, draining=state.draining)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/v1/models", response_model=ModelList, tags=["models"], summary="List models")
async def models(request: Request) -> ModelList:
    """Every served skill and workflow.

    Its ``id`` is the name to call it by, and the ``model`` of a chat completion.
    """
    return ModelList(data=_cards(serve_state(request)))


@router.get(
    "/v1/models/{model}",
    response_model=ModelCard,
    responses={404: {"model": ErrorOut, "description": "No skill or workflow of that name."}},
    tags=["models"],
    summary="Retrieve a model",
)
async def model(model: str, request: Request) -> ModelCard:
    """One served skill or workflow (what OpenAI clients' ``models.retrieve`` asks for)."""
    cards = _cards(serve_state(request))
    found = next((card for card in cards if card.id == model), None)
    if found is None:
        shown = repr(model) if len(model) <= 100 else repr(model[:100]) + "…"
        served = ", ".join(card.id for card in cards) or "none"
        raise NotServed(f"no skill or workflow {shown} is served (they are: {served})")
    return found


def _cards(state: ServeState) -> list[ModelCard]:
    cards = [
        ModelCard(
            id=name,
            kind="skill",
            type=str(getattr(skill, "skill_name", type(skill).__name__)),
            produces=sorted(getattr(skill, "produces", ())),
        )
        for name, skill in sorted(state.skills.items())
    ]
    cards += [
        ModelCard(id=name, kind="workflow", type="workflow", produces=["text"])
        for name in sorted(state.workflows)
    ]
    return cards
