"""LLM backends: local generators and OpenAI-compatible APIs behind one interface."""

from slmstack.backends.base import (
    Backend,
    ChatMessage,
    Completion,
    CompletionRequest,
    TokenLogprob,
    answered_by,
    failover_warnings,
    parse_json_output,
    total_usage,
)
from slmstack.backends.factory import load_backend, runtimes
from slmstack.models.gguf import gguf_path

__all__ = [
    "Backend",
    "ChatMessage",
    "Completion",
    "CompletionRequest",
    "TokenLogprob",
    "answered_by",
    "failover_warnings",
    "gguf_path",
    "load_backend",
    "parse_json_output",
    "runtimes",
    "total_usage",
]
