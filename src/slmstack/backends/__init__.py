"""LLM backends: local generators and OpenAI-compatible APIs behind one interface."""

from slmstack.backends.base import (
    Backend,
    ChatMessage,
    Completion,
    CompletionRequest,
    TokenLogprob,
    parse_json_output,
)
from slmstack.backends.factory import load_backend, runtimes
from slmstack.models.gguf import gguf_path

__all__ = [
    "Backend",
    "ChatMessage",
    "Completion",
    "CompletionRequest",
    "TokenLogprob",
    "gguf_path",
    "load_backend",
    "parse_json_output",
    "runtimes",
]
