"""Value types shared by every skill, workflow and backend."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def json_number(x: float) -> float | None:
    """``x`` rounded to 6 places, or ``None`` when it is not finite (JSON has no NaN)."""
    return round(x, 6) if math.isfinite(x) else None


def json_safe(value: Any) -> Any:
    """``value`` with each float that is not finite (NaN, ±inf) as ``None``, at any depth.

    Example:
        >>> json_safe({"p": float("nan"), "scores": [0.5, float("inf")]})
        {'p': None, 'scores': [0.5, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, tuple):
        return tuple(json_safe(v) for v in value)
    return value


@dataclass(frozen=True)
class Example:
    """One labelled training example.

    ``source`` records where it came from (``file:line``) so errors can point at it.
    """

    text: str
    label: str
    source: str = ""


@dataclass(frozen=True)
class Usage:
    """What one call cost: tokens in and out, and wall time.

    ``by_model`` splits the tokens by the model that answered, ``(model, input_tokens,
    output_tokens)`` each in order of first answer, when an LLM skill knows it (from each
    :class:`~slmstack.backends.Completion`'s ``model``); empty when not known. A remote
    backend with fallbacks may answer from another model than the configured one, at
    another price: a meter prices each model's tokens at that model's price.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    by_model: tuple[tuple[str, int, int], ...] = ()

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class LabelScore:
    """A label and its calibrated probability."""

    label: str
    score: float


@dataclass(frozen=True)
class Span:
    """A labelled character span of the input text: ``text == input[start:end]``."""

    label: str
    start: int
    end: int
    text: str
    confidence: float = 1.0


@dataclass(frozen=True)
class Prediction:
    """The single return type of every skill.

    Which fields are filled depends on the skill: a classifier sets ``label``,
    ``confidence`` and ``scores``; a tagger sets ``spans``; a generator sets ``text``;
    structured skills put their record in ``data``. ``abstained`` carries the reason
    when the skill declines to answer (for example ``"no_match"``), so a workflow
    can escalate. ``warnings`` says what happened to the input, for example that it
    was longer than the model's window.
    """

    label: str | None = None
    confidence: float = 0.0
    scores: tuple[LabelScore, ...] = ()
    spans: tuple[Span, ...] = ()
    text: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    abstained: str | None = None
    usage: Usage = field(default_factory=Usage)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (empty fields left out).

        A confidence, score or ``data`` number that is not finite (a broken skill's NaN) is
        ``None``: JSON has no NaN, and strict readers refuse a file that writes one.
        """
        out: dict[str, Any] = {}
        if self.label is not None:
            out["label"] = self.label
        out["confidence"] = json_number(self.confidence)
        if self.scores:
            out["scores"] = [{"label": s.label, "score": json_number(s.score)} for s in self.scores]
        if self.spans:
            out["spans"] = [
                {
                    "label": s.label,
                    "start": s.start,
                    "end": s.end,
                    "text": s.text,
                    "confidence": json_number(s.confidence),
                }
                for s in self.spans
            ]
        if self.text is not None:
            out["text"] = self.text
        if self.data:
            out["data"] = json_safe(self.data)
        if self.abstained is not None:
            out["abstained"] = self.abstained
        out["usage"] = {
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "latency_ms": round(self.usage.latency_ms, 3),
        }
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


__all__ = ["Example", "LabelScore", "Prediction", "Span", "Usage"]
