"""The JSON bodies of the server's own routes, as pydantic models (the OpenAPI spec).

Requests are validated with these models. Responses are documented by them but built as
plain dicts from :meth:`Prediction.to_dict` and :meth:`Result.to_dict` (FastAPI would
otherwise validate every response a second time, which costs more than a small model's
prediction); ``tests/test_serve_app.py`` checks that the dicts match the models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

_TEXT = "One text to run on (send this or `texts`)."
_TEXTS = "A batch of texts (send this or `text`); at most `limits.max_items`."


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(_In):
    """``POST /v1/skills/{name}/predict``: one text or a batch."""

    text: str | None = Field(None, description=_TEXT, examples=["where is my card?"])
    texts: list[str] | None = Field(None, description=_TEXTS)


class RunRequest(PredictRequest):
    """``POST /v1/workflows/{name}/run``: one text or a batch."""

    trace: StrictBool = Field(True, description="Include each result's per-step trace.")


class UsageOut(BaseModel):
    """Tokens of the call, and its wall time."""

    input_tokens: int
    output_tokens: int
    latency_ms: float


class LabelScoreOut(BaseModel):
    """A label and its calibrated probability."""

    label: str
    score: float


class SpanOut(BaseModel):
    """A labelled character span of the input."""

    label: str
    start: int
    end: int
    text: str
    confidence: float


class PredictionOut(BaseModel):
    """A skill's output: label(s), spans, text or data, and how sure it is."""

    label: str | None = None
    confidence: float
    scores: list[LabelScoreOut] = Field(default_factory=list)
    spans: list[SpanOut] = Field(default_factory=list)
    text: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    abstained: str | None = Field(None, description="Why the skill declined to answer.")
    usage: UsageOut
    warnings: list[str] = Field(default_factory=list)


class CostOut(BaseModel):
    """What one text cost: tokens, time, and money (as the ledger records it)."""

    tokens_in: int
    tokens_out: int
    latency_ms: float
    cost_nusd: int = Field(description="Cost in integer nano-dollars (exact).")
    cost_usd: float = Field(description="The same cost in dollars, for display.")


class SkillResult(BaseModel):
    """One text's prediction and cost."""

    prediction: PredictionOut
    cost: CostOut


class PredictResponse(BaseModel):
    """The predictions, in the order of the texts."""

    skill: str
    request_id: str = Field(description="Ledger rows of text i have request id `ID:i`.")
    results: list[SkillResult]


class DecisionOut(BaseModel):
    """A choice a step made, and why."""

    taken: str
    why: str
    label: str | None = None
    confidence: float | None = None
    threshold: float | None = None


class StepOut(BaseModel):
    """One step of a run: what ran, what it returned and decided, its time and tokens."""

    path: str
    kind: str
    name: str
    output: PredictionOut | None = None
    decision: DecisionOut | None = None
    latency_ms: float
    tokens: dict[str, int]
    children: list[StepOut] = Field(default_factory=list)


class EscalationOut(BaseModel):
    """How a run was handed off: to a person (``packet_id`` in the inbox) or an LLM."""

    to: str
    reason: str
    why: str
    packet_id: int | None = None


class WorkflowResult(BaseModel):
    """One text's run: the answer, every decision, the trace and the cost."""

    input: str
    status: Literal["completed", "escalated"]
    answer: str
    route: list[str]
    output: PredictionOut
    outputs: dict[str, PredictionOut]
    latency_ms: float
    escalation: EscalationOut | None = None
    trace: list[StepOut] | None = Field(None, description="Left out when `trace` is false.")
    cost: CostOut


class RunResponse(BaseModel):
    """The results, in the order of the texts."""

    workflow: str
    request_id: str = Field(description="Ledger rows of text i have request id `ID:i`.")
    results: list[WorkflowResult]


class ModelCard(BaseModel):
    """A served skill or workflow, as an OpenAI ``model`` object (its name is the id)."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "slmstack"
    kind: Literal["skill", "workflow"]
    type: str = Field(description="The skill's registered name, or `workflow`.")
    produces: list[str] = Field(
        default_factory=list, description="The prediction fields it fills (`text`: generates)."
    )


class ModelList(BaseModel):
    """Every served skill and workflow (``GET /v1/models``, as OpenAI lists models)."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class Liveness(BaseModel):
    """The process answers."""

    status: Literal["alive"] = "alive"


class Readiness(BaseModel):
    """Whether every model is loaded and the server takes work."""

    ready: bool
    draining: bool


class ErrorOut(BaseModel):
    """What went wrong, and how to fix it."""

    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "More than one Authorization header."},
    401: {"model": ErrorOut, "description": "No API key, or one the server does not know."},
    404: {"model": ErrorOut, "description": "No skill or workflow of that name is served."},
    413: {"model": ErrorOut, "description": "The body is over `limits.max_body_bytes`."},
    422: {"description": "Invalid input: the message says what and how to fix it."},
    429: {
        "model": ErrorOut,
        "description": "The queue is full, or the key is over its rate; see `Retry-After`.",
    },
    502: {"model": ErrorOut, "description": "A model backend failed (detail in the log)."},
    503: {"model": ErrorOut, "description": "The server is shutting down."},
    504: {
        "model": ErrorOut,
        "description": "`limits.deadline_s` passed before the request's batch began: it was "
        "not run and costs nothing (a batch that began is answered).",
    },
}
"""The error answers of the prediction routes, for the OpenAPI spec."""
