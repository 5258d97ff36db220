"""The bodies of ``POST /v1/chat/completions``, in OpenAI's shapes (the OpenAPI spec).

Requests ignore fields they do not declare: OpenAI clients send sampling options
(``temperature``, ``top_p``, ``max_tokens``, ``seed``...) with every call, and a served
skill or workflow decodes with its own configured settings, so refusing them would only
break unchanged clients. ``n`` above 1 and non-text content (images, audio) are refused
(422): they cannot be honoured. Responses are built as dicts that match these models
(``tests/test_serve_openai.py`` validates them); slmstack's own facts about the answer go
in the extra ``slmstack`` field, which OpenAI clients keep but do not need.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from slmstack.serve.schemas import CostOut


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    """One part of a message's content; only ``{"type": "text", "text": ...}`` is read."""

    type: str
    text: str | None = None


class ChatMessageIn(_Lenient):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(_Lenient):
    """``include_usage``: send a last chunk with the token usage (workflows only)."""

    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    """An OpenAI chat-completions request; the last ``user`` message is the input."""

    model: str = Field(description="A served workflow, or a skill that generates text.")
    messages: list[ChatMessageIn] = Field(min_length=1)
    # OpenAI's API takes null for both (its clients may send it): null means the default.
    stream: StrictBool | None = Field(
        False, description="Answer as Server-Sent Events, OpenAI chunks (null: false)."
    )
    stream_options: StreamOptions | None = None
    n: StrictInt | None = Field(
        1, ge=1, le=1, description="Choices to generate; only 1 is supported (null: 1)."
    )
    user: str | None = None


class ChatMessageOut(BaseModel):
    """The answer."""

    role: Literal["assistant"] = "assistant"
    content: str


class ChoiceOut(BaseModel):
    """The one choice."""

    index: int = 0
    message: ChatMessageOut
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatUsageOut(BaseModel):
    """Tokens of the request, as OpenAI counts them."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class SlmstackOut(BaseModel):
    """What slmstack knows about the answer (OpenAI clients ignore it)."""

    kind: Literal["workflow", "skill"]
    request_id: str = Field(description="Ledger rows of this call have request id `ID:0`.")
    status: str = Field(description="`completed` or `escalated` (workflow); `abstained`.")
    route: list[str] = Field(default_factory=list, description="The decisions taken.")
    escalation: dict[str, Any] | None = None
    trace: list[dict[str, Any]] = Field(
        default_factory=list, description="Per step: path, name, decision, latency_ms."
    )
    abstained: str | None = Field(None, description="Why the skill declined to answer.")
    warnings: list[str] = Field(default_factory=list)
    cost: CostOut | None = Field(None, description="Left out of a streamed skill answer.")


class ChatCompletionResponse(BaseModel):
    """An OpenAI ``chat.completion``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChoiceOut]
    usage: ChatUsageOut
    slmstack: SlmstackOut


class DeltaOut(BaseModel):
    """What one chunk adds to the answer."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoiceOut(BaseModel):
    """The one choice of a chunk; ``finish_reason`` is set on the last one."""

    index: int = 0
    delta: DeltaOut
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    """One Server-Sent Event ``data:`` of a streamed answer; ``data: [DONE]`` ends it."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoiceOut]
    usage: ChatUsageOut | None = None
    slmstack: SlmstackOut | None = None


__all__ = [
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatMessageIn",
]
