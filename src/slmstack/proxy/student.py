"""A student on the proxy's request path: batched predictions in a thread, OpenAI answers.

Why a worker thread: a model's forward pass holds the CPU for milliseconds, which on the
event loop would stall every other client of the proxy; in a thread (torch and ONNX
Runtime release the GIL while they compute) the loop keeps forwarding. Why batches: the
calls that arrive while the student is busy go together in its next pass, which costs
nothing when traffic is light and amortises the per-call overhead of a transformer when
it is not; a call never waits for a batch to fill.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slmstack.proxy.exchange import message_text
from slmstack.proxy.shadow import ShadowTask, student_text

MAX_BATCH = 32  # calls per student batch: beyond this a batch's wait outweighs its gain
HEADER = b"x-slmstack-answered-by"
_NOT_SERVABLE = ("tools", "functions", "logprobs")  # what a student cannot answer


@dataclass(frozen=True)
class Answer:
    """A student's answer to one call: the prediction, as text, its usage, its time."""

    prediction: Any
    content: str
    usage: dict[str, int] | None
    ms: float


class Batcher:
    """One student's predictions, in a worker thread; calls that wait meanwhile batch up."""

    def __init__(self, task: ShadowTask, executor: concurrent.futures.Executor,
                 count_tokens: Callable[[str], int] | None):  # fmt: skip
        self.task = task
        self._executor = executor
        self._count = count_tokens
        self._pending: list[tuple[str, list[dict[str, Any]], asyncio.Future[Answer]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def predict(self, variable: str, messages: list[dict[str, Any]]) -> Answer:
        """The student's answer on ``variable``, the call's variable part, in its next batch.

        ``messages`` (the call's) are counted for the answer's usage.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._pending.append((variable, messages, future))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain(loop))
        return await future

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                items = [(v, m) for v, m, _ in batch]
                try:
                    answers = await loop.run_in_executor(self._executor, self._run, items)
                except Exception as exc:  # the student failed: each call hears why (and cascades)
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (*_, future), answer in zip(batch, answers, strict=True):
                    if not future.done():  # the client may have left
                        future.set_result(answer)
        finally:
            self._drainer = None

    def _run(self, items: list[tuple[str, list[dict[str, Any]]]]) -> list[Answer]:
        start = time.perf_counter()
        predictions = self.task.student.predict([v for v, _ in items])
        each_ms = (time.perf_counter() - start) * 1000 / len(items)
        out = []
        for (_, messages), prediction in zip(items, predictions, strict=True):
            content = student_text(self.task.kind, prediction)
            usage = None
            if self._count is not None:
                t_in = sum(self._count(message_text(m)) for m in messages)
                t_out = self._count(content)
                usage = {"prompt_tokens": t_in, "completion_tokens": t_out,
                         "total_tokens": t_in + t_out}  # fmt: skip
            out.append(Answer(prediction, content, usage, each_ms))
        return out


async def respond(
    send: Any, request: dict[str, Any], request_id: str, started: float, t0: float,
    task_id: str, answer: Answer,
) -> tuple[bytes, str | None, float]:  # fmt: skip
    """Send the student's answer as OpenAI would.

    Returns:
        ``(bytes sent, error, ms from t0, the call's arrival, to the first byte)``.
    """
    model = str(request.get("model", ""))
    head = {"id": f"chatcmpl-slm{request_id[:24]}", "created": int(started), "model": model}
    stream = bool(request.get("stream"))
    if stream:
        include = bool((request.get("stream_options") or {}).get("include_usage"))
        chunks = _stream(head, answer, include)
        kind = b"text/event-stream"
    else:
        data = {**head, "object": "chat.completion", "choices": [{
            "index": 0, "message": {"role": "assistant", "content": answer.content},
            "logprobs": None, "finish_reason": "stop"}]}  # fmt: skip
        if answer.usage is not None:
            data["usage"] = answer.usage
        chunks = [json.dumps(data, ensure_ascii=False).encode()]
        kind = b"application/json"
    headers = [(b"content-type", kind), (HEADER, b"student"),
               (b"x-slmstack-task", task_id.encode())]  # fmt: skip
    if not stream:
        headers.append((b"content-length", str(len(chunks[0])).encode()))
    error, ttfb = None, 0.0
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        ttfb = (time.perf_counter() - t0) * 1000
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": stream})
        if stream:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError as exc:  # the client left
        error = f"the exchange broke off: {type(exc).__name__}: {exc}"
    return b"".join(chunks), error, ttfb


def _stream(head: dict[str, Any], answer: Answer, include_usage: bool) -> list[bytes]:
    chunk = {**head, "object": "chat.completion.chunk"}
    events: list[dict[str, Any]] = [
        {**chunk, "choices": [{"index": 0, "logprobs": None, "finish_reason": None,
                               "delta": {"role": "assistant", "content": answer.content}}]},
        {**chunk, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                               "finish_reason": "stop"}]},
    ]  # fmt: skip
    if include_usage and answer.usage is not None:
        events.append({**chunk, "choices": [], "usage": answer.usage})
    out = [f"data: {json.dumps(e, ensure_ascii=False)}\n\n".encode() for e in events]
    return [*out, b"data: [DONE]\n\n"]


def servable(request: dict[str, Any]) -> bool:
    """Whether a student could answer the request at all (one choice, no tools, no logprobs).

    A malformed ``stream_options``, or a ``stream`` that is not a JSON boolean (``"false"``
    is a string, which Python reads as true), is the LLM's to refuse or read, with its own
    error or its own coercion.
    """
    if any(request.get(k) for k in _NOT_SERVABLE):
        return False
    if not isinstance(request.get("stream_options") or {}, dict):
        return False
    if not isinstance(request.get("stream", False), bool):
        return False
    return request.get("n") in (None, 1)


__all__ = ["HEADER", "MAX_BATCH", "Answer", "Batcher", "respond", "servable"]
