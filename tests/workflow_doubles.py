"""Small test doubles for workflow tests: skills and a backend with known outputs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

from slmstack.backends.base import Backend, Completion, CompletionRequest
from slmstack.types import Prediction, Span, Usage
from slmstack.workflows import (
    EscalateStep,
    ParallelStep,
    SequenceStep,
    SkillStep,
    Step,
    TemplateStep,
)


class KeywordClassifier:
    """Label = the first known keyword in the text, with a fixed confidence per label."""

    produces: ClassVar[frozenset[str]] = frozenset({"label"})

    def __init__(self, confidences: dict[str, float], default: str = "other"):
        self.confidences = confidences
        self.default = default
        self.classes_ = [*confidences, default]
        self.calls: list[str] = []

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        out = []
        for t in texts:
            self.calls.append(t)
            label = next((k for k in self.confidences if k in t.lower()), self.default)
            conf = self.confidences.get(label, 0.2)
            out.append(Prediction(label=label, confidence=conf, usage=Usage(input_tokens=3)))
        return out


class Fixed:
    """Always the same prediction; optionally sleeps, to test parallel joins."""

    def __init__(
        self, pred: Prediction, *, sleep: float = 0.0, produces: frozenset[str] | None = None
    ):
        self.pred = pred
        self.sleep = sleep
        self.threads: list[str] = []
        if produces is not None:
            self.produces = produces

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.threads.append(threading.current_thread().name)
        time.sleep(self.sleep)
        return [self.pred for _ in texts]


class Tagger:
    """Spans for every known word in the text."""

    produces: ClassVar[frozenset[str]] = frozenset({"spans"})

    def __init__(self, words: dict[str, str]):
        self.words = words

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        out = []
        for t in texts:
            spans = []
            for word, label in self.words.items():
                i = t.find(word)
                if i >= 0:
                    spans.append(Span(label, i, i + len(word), word, 0.9))
            out.append(Prediction(spans=tuple(spans), confidence=0.9))
        return out


class Echo:
    """Text = the input it was given (shows what a template fed it)."""

    produces: ClassVar[frozenset[str]] = frozenset({"text"})

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return [Prediction(text=f"summary of: {t}", confidence=0.7) for t in texts]


class Raising:
    """Raises ``exc`` on the n-th call (1-based), else behaves like ``inner``."""

    def __init__(self, inner: KeywordClassifier, fail_on: int, exc: Callable[[], BaseException]):
        self.inner = inner
        self.fail_on = fail_on
        self.exc = exc
        self.n = 0
        self.classes_ = inner.classes_
        self.produces = inner.produces

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.n += 1
        if self.n == self.fail_on:
            raise self.exc()
        return self.inner.predict(texts)


class FakeBackend(Backend):
    """A backend that answers with a fixed text and records the requests."""

    name = "fake"

    def __init__(self, answer: str = "LLM answer"):
        self.answer = answer
        self.requests: list[CompletionRequest] = []

    def complete(self, request: CompletionRequest) -> Completion:
        self.requests.append(request)
        return Completion(self.answer, "fake-llm", Usage(input_tokens=11, output_tokens=4))


def account_and_complaint() -> dict[str, Step]:
    """The desk's ``account`` and ``complaint`` branches, shared by the workflow tests."""
    return {
        "account": SequenceStep(
            [
                SkillStep("entities"),
                TemplateStep(
                    "Please send {missing}.",
                    complete="Thanks, we have {found}.",
                    require_from="entities",
                    require={"ORDER": "your order number", "EMAIL": "your e-mail"},
                ),
            ]
        ),
        "complaint": SequenceStep(
            [
                ParallelStep([SkillStep("sentiment"), SkillStep("entities")]),
                SkillStep(
                    "summarizer",
                    id="summary",
                    input="{input} | {sentiment.label} | {entities.spans}",
                ),
                EscalateStep("complaint", message="A colleague will call you."),
            ]
        ),
    }


class FlakyBackend(FakeBackend):
    """A :class:`FakeBackend` that times out on its ``fail_on``-th call (1-based), and on
    every request holding ``fail_word`` while ``fail_word`` is set; ``calls`` counts them."""

    def __init__(self, *, fail_on: int = 0, fail_word: str | None = None):
        super().__init__()
        self.fail_on = fail_on
        self.fail_word = fail_word
        self.calls = 0

    def complete(self, request: CompletionRequest) -> Completion:
        self.calls += 1
        prompt = request.messages[-1].content
        if self.calls == self.fail_on or (self.fail_word and self.fail_word in prompt):
            from slmstack.errors import BackendError

            raise BackendError(f"timed out on call {self.calls}")
        return super().complete(request)
