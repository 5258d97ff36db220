"""One forwarded chat call as the proxy saw it, and what can be read from its bytes.

The request path keeps only bytes (:class:`Exchange`): the client's body, the upstream's
answer, the times. Everything else (JSON parsing, the text of a streamed answer, its
usage) is read here, in the recorder's thread, so that none of it delays the client.

A streamed answer's usage comes from its final chunk when the client asked for one
(``stream_options.include_usage``); otherwise the proxy counts tokens if it was given a
tokenizer, and otherwise records the row as ``tokens_source="missing"``, never as 0
tokens that would cost $0.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Exchange:
    """The bytes of one forwarded call, captured on the request path.

    Attributes:
        path: the request path (``/v1/chat/completions``).
        request: the client's body, as sent upstream.
        response: the upstream's body (every SSE event, for a stream).
        status: the upstream's status (0 when it could not be reached).
        content_type, content_encoding: the upstream's response headers.
        authorization: the client's ``Authorization`` header (hashed before storage).
        started: the UNIX time the request arrived.
        latency_ms: arrival to the last byte sent back; ttfb_ms: to the first byte.
        error: why the call failed, when it did before an answer came.
    """

    path: str
    request: bytes
    response: bytes
    status: int
    content_type: str
    content_encoding: str
    authorization: str | None
    started: float
    latency_ms: float
    ttfb_ms: float
    error: str | None = None


@dataclass
class Parsed:
    """What the bytes of an exchange say (texts not masked yet)."""

    model: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    response_text: str = ""
    finish_reason: str | None = None
    response_model: str = ""
    upstream_id: str = ""
    usage: dict[str, int] | None = None
    problem: str | None = None  # why part of the exchange could not be read


def parse(ex: Exchange) -> Parsed:
    """The model, messages, answer text and usage of ``ex``; ``problem`` says what failed."""
    out = Parsed()
    try:
        body = json.loads(ex.request)
    except (ValueError, UnicodeDecodeError):
        out.problem = "the request body is not JSON"
        return out
    if not isinstance(body, dict):
        out.problem = "the request body is not a JSON object"
        return out
    out.model = str(body.get("model", ""))
    messages = body.get("messages")
    out.messages = (
        [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    )
    out.params = {k: v for k, v in body.items() if k not in ("messages", "model")}
    out.stream = bool(body.get("stream"))
    raw = _decoded(ex.response, ex.content_encoding)
    if raw is None:
        out.problem = f"the response is {ex.content_encoding}-encoded, which cannot be read"
    elif "text/event-stream" in ex.content_type:
        _read_stream(raw, out)
    elif ex.status == 200:
        _read_completion(raw, out)
    else:
        out.problem = f"upstream status {ex.status}"
        out.response_text = raw.decode("utf-8", "replace")[:2000]
    return out


def message_text(message: dict[str, Any]) -> str:
    """The text of one chat message (its string content, or its text parts joined)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _decoded(raw: bytes, encoding: str) -> bytes | None:
    if encoding in ("", "identity"):
        return raw
    if encoding in ("gzip", "deflate"):
        try:
            return zlib.decompress(raw, zlib.MAX_WBITS | 32)  # gzip or zlib header
        except zlib.error:
            return None
    return None


_MAX_TOKENS = 10**12  # no call has more; beyond, the usage is an upstream's bug, not a count


def _usage(value: Any) -> dict[str, int] | None:
    """The token counts of a usage object; ``None`` when they are not counts (-5, 1e25)."""
    if not isinstance(value, dict):
        return None
    try:
        usage = {
            "prompt_tokens": int(value.get("prompt_tokens") or 0),
            "completion_tokens": int(value.get("completion_tokens") or 0),
        }
    except (TypeError, ValueError, OverflowError):
        return None
    return usage if all(0 <= n < _MAX_TOKENS for n in usage.values()) else None


def _text(value: Any) -> str | None:
    """A field an answer should hold as text, as text (an odd upstream's 7 is "7")."""
    return None if value is None else str(value)


def _read_completion(raw: bytes, out: Parsed) -> None:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        out.problem = "the upstream's answer is not JSON"
        return
    if not isinstance(data, dict):
        out.problem = "the upstream's answer is not a JSON object"
        return
    out.upstream_id = str(data.get("id", ""))
    out.response_model = str(data.get("model", ""))
    out.usage = _usage(data.get("usage"))
    choices = data.get("choices")
    if data.get("error"):  # some servers say 200 and put the error in the body
        out.problem = f"the upstream answered an error: {data['error']}"
    elif not (isinstance(choices, list) and choices and isinstance(choices[0], dict)):
        out.problem = "the upstream's answer has no choice"
    else:
        message = choices[0].get("message") or {}
        out.response_text = message_text(message) if isinstance(message, dict) else ""
        if not out.response_text and isinstance(message, dict) and message.get("tool_calls"):
            out.response_text = json.dumps(message["tool_calls"], ensure_ascii=False)
        out.finish_reason = _text(choices[0].get("finish_reason"))


def _read_stream(raw: bytes, out: Parsed) -> None:
    pieces: list[str] = []
    done = False
    # SSE lines end at CRLF, LF or CR only (not at U+2028 inside a JSON string)
    for line in re.split(r"\r\n|\r|\n", raw.decode("utf-8", "replace")):
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        done = done or payload == "[DONE]"
        if payload == "[DONE]" or not payload:
            continue
        try:
            event = json.loads(payload)
        except ValueError:
            out.problem = "an event of the stream is not JSON"
            continue
        if not isinstance(event, dict):
            continue
        if "error" in event:
            out.problem = f"the stream ended with an error: {event['error']}"
        out.upstream_id = out.upstream_id or str(event.get("id", ""))
        out.response_model = out.response_model or str(event.get("model", ""))
        usage = _usage(event.get("usage"))
        if usage is not None:
            out.usage = usage
        choices = event.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                pieces.append(delta["content"])
            if choice.get("finish_reason"):
                out.finish_reason = _text(choice["finish_reason"])
    out.response_text = "".join(pieces)
    if not done and out.finish_reason is None and out.problem is None:
        out.problem = "the stream ended before its finish_reason and [DONE]"  # cut: no answer


__all__ = ["Exchange", "Parsed", "message_text", "parse"]
