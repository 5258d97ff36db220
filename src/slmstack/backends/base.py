"""The backend contract: ``complete(request) -> Completion``.

A backend is anything that turns chat messages into text: llama.cpp, a transformers
causal LM, or a remote OpenAI-compatible API. Skills (summaries, troubleshooting),
workflow escalation steps and distillation teachers all talk to this interface only,
so they never care which runtime is underneath.

Every backend implements two methods: :meth:`Backend.complete` and
:meth:`Backend.count_tokens` (a skill cuts its input to a window, and a ledger prices a
call, with the backend's own tokenizer). :meth:`Backend.stream` yields the same text in
pieces as it is generated (an HTTP server streams it to its client); llama.cpp, the
transformers runtime and OpenAI-compatible servers stream token by token, and a backend
that cannot yields the whole text as one piece. A :class:`Completion` says which model and
endpoint answered, where its token usage came from and, when the request asked for them
and the backend gives them, each generated token's log-probability with its likeliest
alternatives (:class:`TokenLogprob`): a classifier reads label probabilities from those.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from slmstack.errors import BackendError
from slmstack.types import Usage

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    """One chat turn."""

    role: Role
    content: str


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's log-probability, and the likeliest tokens at its position.

    Attributes:
        token: the generated token, as text.
        logprob: its natural-log probability.
        top: ``(token, logprob)`` of the likeliest tokens at this position, likeliest
            first, as many as :attr:`CompletionRequest.logprobs` asked for (the generated
            token is usually among them).

    Example:
        >>> tok = TokenLogprob("yes", -0.1, (("yes", -0.1), ("no", -2.4)))
        >>> dict(tok.top)["no"]
        -2.4
    """

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class CompletionRequest:
    """What to generate.

    Attributes:
        messages: the conversation, system prompt first.
        max_tokens: upper bound on generated tokens.
        temperature: 0.0 means greedy decoding (reproducible).
        stop: generation ends before any of these strings.
        json_schema: when set, the output is constrained to JSON matching this schema.
        seed: sampling seed when ``temperature > 0``.
        logprobs: ask for each generated token's log-probability and its ``logprobs``
            likeliest alternatives (0 to 20; 0 gives the generated tokens' only). ``None``
            asks for none. A backend that cannot give them (llama.cpp in-process, a server
            that ignores the option) returns ``Completion.logprobs=None``, so the caller
            knows to use another confidence (self-consistency) and can say which it used.
    """

    messages: Sequence[ChatMessage]
    max_tokens: int = 256
    temperature: float = 0.0
    stop: Sequence[str] = ()
    json_schema: Mapping[str, Any] | None = None
    seed: int = 0
    logprobs: int | None = None


@dataclass(frozen=True)
class Completion:
    """Generated text with its token usage and why generation stopped.

    Attributes:
        text: the generated text.
        model: the model that answered: for a remote backend with fallbacks, the name
            configured for the endpoint that answered (the name a price table knows).
        usage: tokens in and out, and wall time of the whole call (retries included).
        finish_reason: ``"length"`` when ``max_tokens`` cut the text.
        logprobs: per generated token, when the request asked and the backend gave them;
            otherwise ``None`` (see :attr:`CompletionRequest.logprobs`).
        endpoint: the base URL that answered (remote backends); ``None`` for local ones.
        failed_over: what went wrong with each endpoint that failed before this one
            answered, in order (``"gpt-4o at https://... answered HTTP 503: ... (3
            attempts)"``); empty when the first choice answered.
        usage_source: ``"backend"`` when the runtime or server counted the tokens,
            ``"tokenizer"`` when the server reported none and they were counted with the
            model's tokenizer over the message texts (chat-template tokens not included).
    """

    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: Literal["stop", "length"] = "stop"
    logprobs: tuple[TokenLogprob, ...] | None = None
    endpoint: str | None = None
    failed_over: tuple[str, ...] = ()
    usage_source: Literal["backend", "tokenizer"] = "backend"


class Backend(ABC):
    """A text generator. Implementations: llama.cpp, transformers, OpenAI-compatible HTTP.

    The contract: :meth:`complete` and :meth:`count_tokens`. Every backend of slmstack
    implements both (a contract test checks it); a third-party backend that does not
    count tokens fails on the first count with a message that says so.
    """

    name: str
    # sha256 of the weights when the backend runs a local file (provenance for skills)
    model_sha256: str | None = None

    @abstractmethod
    def complete(self, request: CompletionRequest) -> Completion:
        """Generate one completion for ``request``."""

    def stream(self, request: CompletionRequest) -> Iterator[str]:
        """Generate ``request``'s completion in pieces, as they are generated.

        The pieces joined are the text :meth:`complete` returns for the same request
        (with greedy decoding). Stop the generation early by closing the iterator
        (``close()``, or leaving a ``with contextlib.closing(...)`` block): a backend
        that streams stops generating then. This default yields :meth:`complete`'s text
        as one piece; backends that generate token by token override it.

        Example:
            >>> from slmstack.backends import load_backend
            >>> llm = load_backend("smollm2")  # doctest: +SKIP
            >>> ask = CompletionRequest([ChatMessage("user", "Say hi")])
            >>> for piece in llm.stream(ask):  # doctest: +SKIP
            ...     print(piece, end="", flush=True)
            Hi!
        """
        yield self.complete(request).text

    async def acomplete(self, request: CompletionRequest) -> Completion:
        """Async :meth:`complete`; local backends run it in a worker thread."""
        return await asyncio.to_thread(self.complete, request)

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` for this backend's tokenizer (no special tokens)."""
        raise BackendError(
            f"{type(self).__name__} does not implement count_tokens(text) -> int, which the "
            "Backend contract requires (skills cut inputs and ledgers price calls with it). "
            "Implement it with the model's tokenizer."
        )


def total_usage(completions: Sequence[Completion], latency_ms: float) -> Usage:
    """The tokens of ``completions`` together, split by the model that answered each.

    A remote backend with fallbacks may answer some calls from another model than the
    configured one; ``by_model`` keeps each model's tokens (see :class:`Usage`), so a
    meter prices them at that model's price.

    Example:
        >>> calls = [Completion("a", "gpt-4o", Usage(10, 1)), Completion("b", "mini", Usage(10, 2))]
        >>> total_usage(calls, 5.0).by_model
        (('gpt-4o', 10, 1), ('mini', 10, 2))
    """
    split: dict[str, tuple[int, int]] = {}
    for c in completions:
        tokens_in, tokens_out = split.get(c.model, (0, 0))
        split[c.model] = (tokens_in + c.usage.input_tokens, tokens_out + c.usage.output_tokens)
    return Usage(
        sum(i for i, _ in split.values()), sum(o for _, o in split.values()), latency_ms,
        by_model=tuple((model, i, o) for model, (i, o) in split.items()),
    )  # fmt: skip


def answered_by(completions: Sequence[Completion]) -> str:
    """The model that answered ``completions``: when several did, each once, joined by ", "."""
    return ", ".join(dict.fromkeys(c.model for c in completions))


def failover_warnings(completions: Sequence[Completion]) -> list[str]:
    """``"failed over: ..."`` for each endpoint failure before a fallback answered, once each."""
    return [
        f"failed over: {f}" for f in dict.fromkeys(f for c in completions for f in c.failed_over)
    ]


def parse_json_output(completion: Completion, request: CompletionRequest) -> Any:
    """Parse the text of a schema-constrained completion, or raise :class:`BackendError`.

    Constrained decoding guarantees valid JSON only when generation is not cut short by
    ``max_tokens``; this turns that case into an error that says how to fix it.
    """
    try:
        return json.loads(completion.text)
    except json.JSONDecodeError as exc:
        cause = (
            f"generation stopped at max_tokens={request.max_tokens}; raise it"
            if completion.finish_reason == "length"
            else "the backend did not honour the schema"
        )
        raise BackendError(
            f"{completion.model} returned invalid JSON under a schema constraint ({exc.msg}: "
            f"{completion.text[:80]!r}): {cause}."
        ) from exc


def cut_at_stops(pieces: Iterable[str], stops: Sequence[str]) -> Iterator[str]:
    r"""Stream ``pieces`` up to the first stop string, holding back a possible stop prefix.

    For runtimes that stop *after* generating a stop string: the text before it is
    yielded as soon as it cannot be the start of one, the stop string never is.

    Example:
        >>> list(cut_at_stops(["Hel", "lo\n", "\nBye"], ["\n\n"]))
        ['Hel', 'lo']
    """
    if not stops:
        yield from pieces
        return
    held = ""
    for piece in pieces:
        held += piece
        cuts = [i for i in (held.find(s) for s in stops) if i >= 0]
        if cuts:
            if min(cuts):
                yield held[: min(cuts)]
            return
        keep = max((n for s in stops for n in range(1, len(s)) if held.endswith(s[:n])), default=0)
        if len(held) > keep:
            yield held[: len(held) - keep]
            held = held[len(held) - keep :]
    if held:
        yield held
