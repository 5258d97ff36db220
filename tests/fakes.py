"""Test doubles for the backend contract: injected instead of patching a real model.

``FakeBackend`` lives with the tests, not in the ``slmstack`` package: it is a test
double, and a user who imported it from the package would build on something that only
pretends to generate.

Example:
    >>> from slmstack.backends import ChatMessage, CompletionRequest
    >>> fake = FakeBackend(["Hello."])
    >>> fake.complete(CompletionRequest([ChatMessage("user", "hi")])).text
    'Hello.'
    >>> fake.requests[0].messages[0].content
    'hi'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from slmstack.backends import Backend, Completion, CompletionRequest
from slmstack.errors import BackendError
from slmstack.types import Usage


class FakeBackend(Backend):
    """Answers from a list (in order, then the last one again) or from a function.

    Tokens are whitespace-separated words, so usage and ``count_tokens`` are predictable.
    ``stop`` sequences and ``max_tokens`` are applied like a real backend would.
    A response may also be a whole :class:`Completion` (to script log-probabilities,
    a fallback endpoint or a cut answer); it is returned as it is.
    Every request is kept in :attr:`requests` for assertions.
    """

    def __init__(
        self,
        responses: Sequence[str | Completion] | Callable[[CompletionRequest], str | Completion],
        *,
        name: str = "fake",
    ):
        if not callable(responses) and not responses:
            raise BackendError("FakeBackend needs at least one response")
        self.responses = responses
        self.name = name
        self.requests: list[CompletionRequest] = []

    def count_tokens(self, text: str) -> int:
        """Number of whitespace-separated words."""
        return len(text.split())

    def complete(self, request: CompletionRequest) -> Completion:
        """The next scripted response, cut at stop sequences and ``max_tokens`` words."""
        self.requests.append(request)
        if callable(self.responses):
            text = self.responses(request)
        else:
            text = self.responses[min(len(self.requests), len(self.responses)) - 1]
        if isinstance(text, Completion):
            return text
        for stop in request.stop:
            if stop in text:
                text = text[: text.index(stop)]
        words = text.split(" ")
        finish = "length" if len(words) > request.max_tokens else "stop"
        text = " ".join(words[: request.max_tokens])
        prompt = sum(self.count_tokens(m.content) for m in request.messages)
        return Completion(
            text=text,
            model=self.name,
            usage=Usage(prompt, self.count_tokens(text)),
            finish_reason=finish,  # type: ignore[arg-type]
        )


def down_traffic_store(url: str):
    """A proxy traffic store whose database refuses every write (the database is down)."""
    from slmstack.errors import ConfigError
    from slmstack.proxy.traffic import TrafficStore

    class Down(TrafficStore):
        def insert(self, rows):
            list(rows)
            raise ConfigError("the database is down")

    return Down(url)
