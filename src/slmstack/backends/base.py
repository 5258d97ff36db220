"""The backend contract: ``complete(request) -> Completion``.

A backend is anything that turns chat messages into text: llama.cpp, a transformers
causal LM, or a remote OpenAI-compatible API. Skills (summaries, troubleshooting),
workflow escalation steps and distillation teachers all talk to this interface only,
so they never care which runtime is underneath.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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

    @abstractmethod
    def complete(self, request: CompletionRequest) -> Completion:
        """Generate one completion for ``request``."""

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` for this backend's tokenizer."""
        raise NotImplementedError(f"{type(self).__name__} cannot count tokens")
