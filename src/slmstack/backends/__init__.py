"""LLM backends: local generators and OpenAI-compatible APIs behind one interface."""

from slmstack.backends.base import Backend, ChatMessage, Completion, CompletionRequest

__all__ = ["Backend", "ChatMessage", "Completion", "CompletionRequest"]
