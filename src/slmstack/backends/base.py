"""The backend contract: ``complete(request) -> Completion``.

A backend is anything that turns chat messages into text: llama.cpp, a transformers
causal LM, or a remote OpenAI-compatible API. Skills (summaries, troubleshooting),
workflow escalation steps and distillation teachers all talk to this interface only,
so they never care which runtime is underneath.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
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
class CompletionRequest:
    """What to generate.

    Attributes:
        messages: the conversation, system prompt first.
        max_tokens: upper bound on generated tokens.
        temperature: 0.0 means greedy decoding (reproducible).
        stop: generation ends before any of these strings.
        json_schema: when set, the output is constrained to JSON matching this schema.
        seed: sampling seed when ``temperature > 0``.
    """

    messages: Sequence[ChatMessage]
    max_tokens: int = 256
    temperature: float = 0.0
    stop: Sequence[str] = ()
    json_schema: Mapping[str, Any] | None = None
    seed: int = 0


@dataclass(frozen=True)
class Completion:
    """Generated text with its token usage and why generation stopped."""

    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: Literal["stop", "length"] = "stop"


class Backend(ABC):
    """A text generator. Implementations: llama.cpp, transformers, OpenAI-compatible HTTP."""

    name: str
    # sha256 of the weights when the backend runs a local file (provenance for skills)
    model_sha256: str | None = None

    @abstractmethod
    def complete(self, request: CompletionRequest) -> Completion:
        """Generate one completion for ``request``."""

    async def acomplete(self, request: CompletionRequest) -> Completion:
        """Async :meth:`complete`; local backends run it in a worker thread."""
        return await asyncio.to_thread(self.complete, request)

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` for this backend's tokenizer."""
        raise NotImplementedError(f"{type(self).__name__} cannot count tokens")


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
