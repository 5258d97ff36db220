"""Reading one OpenAI chat-completion response into a :class:`Completion`.

The body is checked before it is trusted: a server that is not OpenAI-compatible (a
wrong ``base_url`` answering HTML or another JSON) counts as a failed endpoint
(:class:`EndpointDown`, so a fallback may answer), a refusal is an error, and usage is
the server's, else counted with the model's tokenizer, else an error: never a silent
zero, since the ledger prices calls by it. An answer a content filter withheld or cut
(``finish_reason: content_filter``) is an error too, not an empty or partial text.
Also what a failover says: the warning logged each time a fallback answers, and the
error when every endpoint failed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Literal

from slmstack.backends.base import Completion, CompletionRequest, TokenLogprob
from slmstack.backends.token_count import TokenCounter
from slmstack.errors import BackendError
from slmstack.types import Usage

MAX_BODY_IN_ERROR = 300  # characters of a response body quoted in an error


def shown_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@`` (errors reach logs)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


log = logging.getLogger("slmstack.backends.openai_compat")


class EndpointDown(BackendError):
    """An endpoint is still unavailable after its retries: the next fallback may answer."""


def parse_completion(
    raw: Any, request: CompletionRequest, *, model: str, endpoint: str, count: TokenCounter | None
) -> Completion:
    """The :class:`Completion` of ``raw`` (the client's raw response) to ``request``.

    Args:
        raw: the ``openai`` client's ``with_raw_response`` result.
        request: what was asked (for counted usage and log-probabilities).
        model: the name the endpoint was called with.
        endpoint: its base URL.
        count: the model's tokenizer, for a server that reports no usage.

    Raises:
        EndpointDown: the body is not a chat completion.
        BackendError: the model refused, or usage can be neither read nor counted.
    """
    url = f"{endpoint}/chat/completions"
    try:
        data = raw.parse()
    except ValueError as exc:  # a JSON content type over a body cut short, empty or not JSON
        raise EndpointDown(
            f"{url} returned a body that is not valid JSON ({exc}): "
            f"{raw.http_response.text[:MAX_BODY_IN_ERROR]!r}. Check that base_url is the API "
            "root of an OpenAI-compatible server (it usually ends in /v1)."
        ) from exc
    choices = getattr(data, "choices", None)
    choice: Any = choices[0] if isinstance(choices, list) and choices else None
    message = getattr(choice, "message", None)
    text = getattr(message, "content", None)
    if message is None or not isinstance(text, str | None):
        raw_text = raw.http_response.text[:MAX_BODY_IN_ERROR]
        error = _error_in(data)
        if error is not None:  # a gateway's failure sent with status 200
            raise EndpointDown(
                f"{url} answered HTTP 200 with an error instead of a completion: {error}"
            )
        raise EndpointDown(
            f"{url} returned a body that is not an OpenAI chat completion (no "
            f"choices[0].message.content): {raw_text!r}. Check that base_url is the "
            "API root of an OpenAI-compatible server (it usually ends in /v1)."
        )
    if text is None and getattr(message, "refusal", None):
        raise BackendError(f"{model} at {endpoint} refused to answer: {message.refusal}")
    if choice.finish_reason == "content_filter":  # withheld or cut: not an answer to pass on
        raise BackendError(
            f"{model} at {endpoint}: the provider's content filter withheld the answer "
            f"(finish_reason 'content_filter'; text so far: {(text or '')[:80]!r})"
        )
    text = text or ""
    reported = getattr(data, "usage", None)
    prompt = getattr(reported, "prompt_tokens", None)
    completion = getattr(reported, "completion_tokens", None)
    source: Literal["backend", "tokenizer"] = "backend"
    if isinstance(prompt, int) and isinstance(completion, int):
        usage = Usage(prompt, completion)
    else:
        usage, source = _counted(request, text, url, model, count), "tokenizer"
    return Completion(
        text=text,
        model=model,
        usage=usage,
        finish_reason="length" if choice.finish_reason == "length" else "stop",
        logprobs=_logprobs(choice) if request.logprobs is not None else None,
        endpoint=endpoint,
        usage_source=source,
    )


def _error_in(data: Any) -> str | None:
    """The ``error`` (its ``message`` when it has one) of a body that has one, else ``None``."""
    fields = data if isinstance(data, dict) else getattr(data, "model_extra", None) or {}
    error = fields.get("error") if isinstance(fields, dict) else None
    if not error:
        return None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or error)[:MAX_BODY_IN_ERROR]


def _counted(
    request: CompletionRequest, text: str, url: str, model: str, count: TokenCounter | None
) -> Usage:
    """Usage counted with the tokenizer, for a server that reported none."""
    if count is None:
        raise BackendError(
            f"{url} reported no token usage and OpenAICompatBackend({model!r}) has no "
            "tokenizer to count it with; the call cannot be costed. Pass tokenizer=... "
            "(the served model's GGUF alias or tokenizer folder) in the backend options."
        )
    prompt_tokens = sum(int(count(m.content)) for m in request.messages)
    return Usage(prompt_tokens, int(count(text)))


def _logprobs(choice: Any) -> tuple[TokenLogprob, ...] | None:
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not isinstance(content, list):
        return None  # the server ignored the request for them
    return tuple(
        TokenLogprob(
            token=str(item.token),
            logprob=float(item.logprob),
            top=tuple((str(t.token), float(t.logprob)) for t in (item.top_logprobs or ())),
        )
        for item in content
    )


def stream_pieces(
    events: Any, where: str, errors: tuple[type[BaseException], ...]
) -> Iterator[str]:
    """The text pieces of an opened chat-completion stream (``events``), from ``where``.

    ``errors`` (the client's API and HTTP errors) and an event that is not JSON are raised
    as :class:`BackendError`. A stream with no event at all is one too: a server that
    ignores ``stream=True`` answers one JSON body, which has no events, and reading it as
    an empty answer would hide that. So is a stream that ends before an event says why
    the answer ended (``finish_reason``): the connection was closed mid-answer, and the
    text so far is not the answer; and one the content filter cut, as in ``complete``.
    """
    seen = False
    finish: str | None = None
    caught: tuple[type[BaseException], ...] = (*errors, ValueError)
    try:
        for chunk in events:
            seen = True
            choices = getattr(chunk, "choices", None)
            if choices:  # a usage-only chunk has none
                piece = getattr(choices[0].delta, "content", None)
                if piece:
                    yield piece
                finish = getattr(choices[0], "finish_reason", None) or finish
    except caught as exc:
        problem = f"an event that is not valid JSON ({exc})" if isinstance(exc, ValueError) else exc
        raise BackendError(f"{where} failed in the middle of a stream: {problem}") from exc
    if finish == "content_filter":
        raise BackendError(
            f"{where}: the provider's content filter withheld the rest of the streamed answer "
            "(finish_reason 'content_filter')"
        )
    if seen and finish is None:
        raise BackendError(
            f"{where}: the stream ended before the answer did (no event gave a "
            "finish_reason): the connection was closed mid-answer, so the text sent is "
            "incomplete. Retry the request; if it keeps happening, check proxies' timeouts."
        )
    if not seen:
        kind = events.response.headers.get("content-type", "no content type")
        raise BackendError(
            f"{where} answered a streaming request with no stream events ({kind}): the "
            "server does not stream. Use complete() with it, or a server that streams "
            "(text/event-stream)."
        )


def all_failed(failures: list[str]) -> BackendError:
    """The error when no endpoint answered: each endpoint's failure, in order."""
    if len(failures) == 1:
        return BackendError(failures[0])
    return BackendError(f"all {len(failures)} endpoints failed:\n  " + "\n  ".join(failures))


def log_failover(answered: str, failures: list[str]) -> None:
    """Say, every time, that a fallback answered: it may be a different (paid) model."""
    log.warning("fallback %s answered after: %s", answered, "; ".join(failures))
