"""``POST /v1/chat/completions``: OpenAI's chat API over served workflows and generators.

So that existing OpenAI clients work unchanged, ``model`` names what answers: a served
workflow, or a served skill that generates text (``"text"`` in its ``produces``). The
last ``user`` message is the input; earlier messages are not read (a skill or workflow
answers one text). The answer is the workflow's ``Result.answer`` or the skill's text;
what slmstack knows beside it (status, decisions, a trace summary, the cost) goes in the
extra ``slmstack`` field, which OpenAI clients ignore.

Without ``stream`` the call goes through the target's micro-batcher like any other
request (batching, queue limit, deadline, ledger row with the caller's key). With
``stream: true`` the answer comes as Server-Sent Events in OpenAI's chunk format, ended
by ``data: [DONE]``:

* a workflow runs as usual and sends its answer as one content chunk;
* a skill whose ``stream(text)`` works sends its tokens as they are generated, under a
  :class:`~slmstack.serve.streaming.StreamGate` (one generation at a time per skill, the
  queue limit, and the deadline for the first token). A skill that cannot stream (it
  has no ``stream``, or raises :class:`~slmstack.errors.NotStreamableError` because it
  checks its text after generating it: a Troubleshooter, a Summarizer that fills a
  schema or rejects copies) answers through its batcher, in one content chunk. A stream
  is metered when it ends, however it ends: its ledger rows carry the caller's key, its
  cost is in the last chunk's ``slmstack`` field, and ``stream_options.include_usage``
  adds OpenAI's usage chunk (tokens counted with the skill's tokenizer).

A failure after the first chunk cannot change the status any more: it is sent as an
``{"error": ...}`` event, which OpenAI clients raise as an ``APIError``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from functools import partial
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from slmstack.errors import (
    DataError,
    DeadlineExceeded,
    NotServed,
    NotStreamableError,
    SlmstackError,
)
from slmstack.serve.asgi import openai_error
from slmstack.serve.http_errors import shown
from slmstack.serve.limits import check_input
from slmstack.serve.openai_schemas import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessageIn,
)
from slmstack.serve.routes import caller, cost, serve_state
from slmstack.serve.schemas import ERRORS
from slmstack.serve.state import ServeState, SkillAnswer, WorkflowAnswer
from slmstack.serve.streaming import StreamGate, ThreadStream, sse
from slmstack.types import Usage
from slmstack.workflows.trace import Result

router = APIRouter(tags=["openai"])
_log = logging.getLogger("slmstack.serve")
_SSE = "text/event-stream"


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` references replaced by the definitions themselves."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        return [walk(v) for v in node] if isinstance(node, list) else node

    return dict(walk(schema))


_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {
        "description": "The answer; with `stream: true`, Server-Sent Events whose `data:` "
        "are chat.completion.chunk objects, ended by `data: [DONE]`.",
        "content": {_SSE: {"schema": _inline(ChatCompletionChunk.model_json_schema())}},
    },
}


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletionResponse,
    responses=_RESPONSES,
    summary="Chat completion (OpenAI-compatible)",
)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """Answer the last user message with the workflow or generative skill named ``model``.

    Errors carry OpenAI's ``{"error": {"message", "type", "code"}}`` beside ``detail``,
    so OpenAI clients show the reason.

    With ``stream: true`` the answer comes as Server-Sent Events (``chat.completion.chunk``
    objects, then ``data: [DONE]``): a skill that streams sends its tokens as they are
    generated; a workflow, or a skill that checks its text once generated, sends its
    answer in one chunk. Sampling options (``temperature``, ``max_tokens``...) are accepted
    and ignored: each skill decodes with its own settings. What slmstack knows about the
    answer (status, decisions, trace summary, cost) is in the extra ``slmstack`` field.
    """
    try:
        return await _answer(body, request)
    except SlmstackError as exc:
        return await _openai_error(request, exc)


async def _answer(body: ChatCompletionRequest, request: Request) -> Response:
    state = serve_state(request)
    kind = _kind(state, body.model)
    text = _last_user_text(body.messages)
    if kind == "skill" and body.stream:
        streamed = await _stream_tokens(request.app, state, body, text, caller(request))
        if streamed is not None:
            return streamed
    request_id, calls = state.calls([text], caller(request))
    [answer] = await state.submit(state.batcher(kind, body.model), calls)
    if isinstance(answer, WorkflowAnswer):
        content, usage, extra = _workflow_answer(answer, request_id)
    else:
        content, usage, extra = _skill_answer(answer, request_id)
    reply = _Reply(body.model, request_id)
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        events = reply.one_piece(content, extra, usage if include_usage else None)
        return StreamingResponse(events, media_type=_SSE)
    return JSONResponse(reply.completion(content, usage, extra))


async def _openai_error(request: Request, exc: SlmstackError) -> Response:
    """The app's answer to ``exc`` (status, headers, ``detail``) plus OpenAI's ``error``."""
    handler = request.app.exception_handlers[SlmstackError]
    plain = await handler(request, exc)
    detail = json.loads(bytes(plain.body))["detail"]
    error = openai_error(plain.status_code, detail, type(exc).__name__)
    keep = {k: v for k, v in plain.headers.items() if k in ("retry-after", "www-authenticate")}
    return JSONResponse({"error": error, "detail": detail}, plain.status_code, headers=keep)


# ---------------------------------------------------------------------- the request
def _kind(state: ServeState, name: str) -> str:
    """``"workflow"`` or ``"skill"``; :class:`NotServed` listing the chat models otherwise."""
    if name in state.workflows:
        return "workflow"
    skill = state.skills.get(name)
    if skill is not None and "text" in getattr(skill, "produces", ()):
        return "skill"
    chat = sorted(state.workflows) + sorted(
        n for n, s in state.skills.items() if "text" in getattr(s, "produces", ())
    )
    hint = ""
    if skill is not None:
        hint = (f"; skill {name!r} does not generate text (it produces "
                f"{', '.join(sorted(skill.produces))}): use /v1/skills/{name}/predict")  # fmt: skip
    shown = repr(name) if len(name) <= 100 else repr(name[:100]) + "…"  # echo no megabyte
    raise NotServed(
        f"no workflow or text-generating skill {shown} is served as a chat model (they "
        f"are: {', '.join(chat) or 'none'}){hint}"
    )


def _last_user_text(messages: Sequence[ChatMessageIn]) -> str:
    """The text of the last ``user`` message, checked like any input text."""
    index = next((i for i in reversed(range(len(messages))) if messages[i].role == "user"), None)
    if index is None:
        raise DataError("messages hold no 'user' message; the last user message is the input")
    where = f"messages[{index}].content"
    content = messages[index].content
    if isinstance(content, list):
        other = sorted({p.type for p in content if p.type != "text"})
        if other:
            raise DataError(f"{where} holds {', '.join(other)} parts; only text is read here")
        content = "\n".join(p.text or "" for p in content)
    return check_input(content or "", where)


# ---------------------------------------------------------------------- answers
def _workflow_answer(answer: WorkflowAnswer, request_id: str) -> tuple[str, Any, dict[str, Any]]:
    result: Result = answer.result
    usage = result.usage
    extra = {
        "kind": "workflow", "request_id": request_id, "status": result.status,
        "route": result.route,
        "escalation": None if result.escalation is None else result.escalation.to_dict(),
        "trace": [
            {"path": node.path, "name": node.name,
             "decision": None if node.decision is None else node.decision.taken,
             "latency_ms": round(node.latency_ms, 3)}
            for root in result.trace for node in root.walk()
        ],
        "abstained": result.output.abstained, "warnings": list(result.output.warnings),
        "cost": cost(usage.input_tokens, usage.output_tokens, result.latency_ms,
                     answer.cost_nusd),
    }  # fmt: skip
    return result.answer, usage, extra


def _skill_answer(answer: SkillAnswer, request_id: str) -> tuple[str, Any, dict[str, Any]]:
    pred = answer.prediction
    usage = pred.usage
    content = pred.text if pred.text is not None else ""
    if pred.text is None and pred.abstained:
        content = f"(abstained: {pred.abstained})"  # as Result.answer renders it
    extra = {
        "kind": "skill", "request_id": request_id,
        "status": "abstained" if pred.abstained else "completed",
        "abstained": pred.abstained, "warnings": list(pred.warnings),
        "cost": cost(usage.input_tokens, usage.output_tokens, answer.latency_ms,
                     answer.cost_nusd),
    }  # fmt: skip
    return content, usage, extra


def _usage(usage: Any) -> dict[str, int]:
    tokens_in, tokens_out = usage.input_tokens, usage.output_tokens
    return {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out}  # fmt: skip


class _Reply:
    """The OpenAI objects of one answer: a completion, or the chunks of a stream."""

    def __init__(self, model: str, request_id: str):
        self.model = model
        self.id = f"chatcmpl-{request_id}"
        self.created = int(time.time())

    def completion(self, content: str, usage: Any, extra: dict[str, Any]) -> dict[str, Any]:
        message = {"role": "assistant", "content": content}
        return {"id": self.id, "object": "chat.completion", "created": self.created,
                "model": self.model, "usage": _usage(usage), "slmstack": extra,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop",
                             "logprobs": None}]}  # fmt: skip

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "choices": [choice], **more})  # fmt: skip

    def usage_chunk(self, usage: Any) -> bytes:
        return sse({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "choices": [], "usage": _usage(usage)})  # fmt: skip

    async def one_piece(
        self, content: str, extra: dict[str, Any], usage: Any | None
    ) -> AsyncIterator[bytes]:
        yield self.chunk({"role": "assistant", "content": ""})
        yield self.chunk({"content": content})
        yield self.chunk({}, "stop", slmstack=extra)
        if usage is not None:
            yield self.usage_chunk(usage)
        yield sse("[DONE]")

    async def tokens(self, first: str, pieces: ThreadStream, gate: StreamGate,
                     metered: _Metered, include_usage: bool) -> AsyncIterator[bytes]:  # fmt: skip
        try:
            yield self.chunk({"role": "assistant", "content": ""})
            piece: str | None = first
            while piece is not None:
                yield self.chunk({"content": piece})
                piece = await pieces.next()
            yield self.chunk({}, "stop", slmstack=metered.extra())  # metered by now
            if include_usage:
                yield self.usage_chunk(metered.usage)
            yield sse("[DONE]")
        except Exception as exc:  # the status is sent: say it in the stream, as OpenAI does
            _log.error("stream from %s failed: %s: %s", self.model, type(exc).__name__, exc)
            message = shown(exc, f"the stream of {self.model}")
            yield sse({"error": {"message": message, "type": type(exc).__name__}})
        finally:
            pieces.close()
            gate.leave()


# ---------------------------------------------------------------------- token streams
def _gate(app: FastAPI, state: ServeState, name: str) -> StreamGate:
    """The stream gate of skill ``name`` (one per skill, made on first use)."""
    gates: dict[str, StreamGate] | None = getattr(app.state, "openai_stream_gates", None)
    if gates is None:
        gates = app.state.openai_stream_gates = {}
    if name not in gates:
        gates[name] = StreamGate(f"skill:{name}", queue_size=state.config.limits.queue_size)
    return gates[name]


class _Metered:
    """A stream's usage and cost, filled in by the stream's thread when it ends."""

    def __init__(self, state: ServeState, model: str, request_id: str, key: str | None):
        self.state, self.model, self.request_id, self.key = state, model, request_id, key
        self.usage, self.cost_nusd, self.seconds = Usage(), 0, 0.0

    def end(self, pieces: Iterator[str] | None, seconds: float) -> None:
        """Meter the generation (``ThreadStream``'s ``on_end``): ledger rows with the key."""
        if pieces is None:  # nothing was generated: the skill refused to stream
            return
        usage = getattr(pieces, "usage", None)  # a TextStream counts its tokens
        self.usage = usage if isinstance(usage, Usage) else Usage(latency_ms=seconds * 1000)
        self.seconds = seconds
        self.cost_nusd = self.state.meter_skill_call(
            self.model, f"{self.request_id}:0", self.key, self.usage, seconds
        )

    def extra(self) -> dict[str, Any]:
        u = self.usage
        spent = cost(u.input_tokens, u.output_tokens, self.seconds * 1000, self.cost_nusd)
        return {"kind": "skill", "request_id": self.request_id, "status": "completed",
                "cost": spent}  # fmt: skip


async def _stream_tokens(
    app: FastAPI, state: ServeState, body: ChatCompletionRequest, text: str, key: str | None
) -> StreamingResponse | None:
    """The skill's tokens as SSE, or ``None`` when it cannot stream (answer in one piece).

    The stream is metered when it ends, however it ends (run out, failed, or stopped by a
    client that went away): its ledger rows carry the caller's key, as a prediction's do.
    """
    skill = state.skills[body.model]
    stream = getattr(skill, "stream", None)
    if not callable(stream):
        return None
    state.admit()  # a stream is metered as a prediction is: not while the ledger is down
    deadline = time.monotonic() + state.config.limits.deadline_s
    gate = _gate(app, state, body.model)
    await gate.enter(deadline)
    request_id = uuid.uuid4().hex
    metered = _Metered(state, body.model, request_id, key)
    pieces = ThreadStream(partial(stream, text), name=f"stream-{body.model}", on_end=metered.end)
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            first = await pieces.next()
    except BaseException as exc:
        pieces.close()
        gate.leave()
        if isinstance(exc, NotStreamableError):
            return None
        if isinstance(exc, TimeoutError):
            raise DeadlineExceeded(
                f"skill {body.model!r} generated no token before the request's deadline "
                f"({state.config.limits.deadline_s:g} s, limits.deadline_s)"
            ) from None
        raise
    reply = _Reply(body.model, request_id)
    include_usage = body.stream_options is not None and body.stream_options.include_usage
    if first is None:  # nothing was generated
        pieces.close()
        gate.leave()
        usage = metered.usage if include_usage else None
        return StreamingResponse(reply.one_piece("", metered.extra(), usage), media_type=_SSE)
    events = reply.tokens(first, pieces, gate, metered, include_usage)
    return StreamingResponse(events, media_type=_SSE)


__all__ = ["router"]
