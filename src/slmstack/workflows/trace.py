"""What a workflow run returns: the result and a per-step trace of decisions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from slmstack.types import Prediction, Usage, json_number

Status = Literal["completed", "escalated"]


@dataclass(frozen=True)
class Decision:
    """A choice a step made, and why.

    Attributes:
        taken: what was chosen (a branch label, ``"accept"``, ``"next"``, ``"human"``).
        why: one readable sentence, e.g. ``"confidence 0.41 < threshold 0.55"``.
        label: the label the decision was based on, if any.
        confidence: the confidence it was based on, if any.
        threshold: the threshold it was compared with, if any.
    """

    taken: str
    why: str
    label: str | None = None
    confidence: float | None = None
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON view, empty fields left out."""
        out: dict[str, Any] = {"taken": self.taken, "why": self.why}
        if self.label is not None:
            out["label"] = self.label
        if self.confidence is not None:  # None when NaN: JSON has none (see Prediction)
            out["confidence"] = json_number(self.confidence)
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return out


@dataclass
class StepTrace:
    """One step of one run: what ran, what it returned, what it decided, what it cost.

    ``usage`` sums the tokens of the step and everything under it; ``latency_ms`` is the
    wall time of the step including its children.
    """

    path: str
    kind: str
    name: str
    output: Prediction | None = None
    decision: Decision | None = None
    latency_ms: float = 0.0
    usage: Usage = field(default_factory=Usage)
    children: list[StepTrace] = field(default_factory=list)

    @property
    def confidence(self) -> float | None:
        """Confidence of the step's output, if it produced one."""
        return None if self.output is None else self.output.confidence

    def walk(self) -> Iterator[StepTrace]:
        """Walk the step and every step under it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def to_dict(self) -> dict[str, Any]:
        """JSON view of the step and its children."""
        out: dict[str, Any] = {"path": self.path, "kind": self.kind, "name": self.name}
        if self.output is not None:
            out["output"] = self.output.to_dict()
        if self.decision is not None:
            out["decision"] = self.decision.to_dict()
        out["latency_ms"] = round(self.latency_ms, 3)
        out["tokens"] = {"input": self.usage.input_tokens, "output": self.usage.output_tokens}
        if self.children:
            out["children"] = [c.to_dict() for c in self.children]
        return out


def add_usage(parts: list[Usage]) -> Usage:
    """Sum tokens; latency is measured by the caller, so it is not summed."""
    return Usage(
        input_tokens=sum(u.input_tokens for u in parts),
        output_tokens=sum(u.output_tokens for u in parts),
    )


@dataclass(frozen=True)
class Escalation:
    """How a run was handed off: to a human queue (``packet_id``) or to an LLM."""

    to: str
    reason: str
    why: str
    packet_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        out: dict[str, Any] = {"to": self.to, "reason": self.reason, "why": self.why}
        if self.packet_id is not None:
            out["packet_id"] = self.packet_id
        return out


@dataclass(frozen=True)
class Result:
    """The outcome of ``Workflow.run``.

    Attributes:
        input: the text the workflow ran on.
        output: the output of the last step that ran (the answer).
        outputs: every named step's output, by step id.
        status: ``"completed"`` or ``"escalated"``.
        escalation: how it was handed off, when escalated.
        trace: one :class:`StepTrace` per top-level step.
        latency_ms: wall time of the whole run.
    """

    input: str
    output: Prediction
    outputs: Mapping[str, Prediction]
    status: Status
    escalation: Escalation | None
    trace: list[StepTrace]
    latency_ms: float

    @property
    def route(self) -> list[str]:
        """The decisions taken, in order, e.g. ``["accept", "faq", "accept"]``."""
        return [t.decision.taken for root in self.trace for t in root.walk() if t.decision]

    @property
    def answer(self) -> str:
        """The output as one readable string (text, else label, else spans, else data).

        An escalation without a message of its own reads ``(escalated to human: REASON)``,
        an abstention ``(abstained: REASON)``; spans read as a template's ``{ID}`` does
        (``ORG: Acme; DATE: 3 May``) and data as JSON.
        """
        out = self.output
        if out.text is not None:
            return out.text
        if self.escalation is not None:
            return f"(escalated to {self.escalation.to}: {self.escalation.reason})"
        if out.label is not None:
            return out.label
        if out.spans:
            return "; ".join(f"{s.label}: {s.text}" for s in out.spans)  # as {ID} renders
        if out.abstained:
            return f"(abstained: {out.abstained})"
        if not out.data:
            return ""
        import json

        return json.dumps(dict(out.data), ensure_ascii=False, default=str)  # not a Python repr

    @property
    def usage(self) -> Usage:
        """Tokens of every step, and the wall time of the run."""
        total = add_usage([t.usage for t in self.trace])
        return Usage(total.input_tokens, total.output_tokens, self.latency_ms)

    def to_dict(self, *, trace: bool = True) -> dict[str, Any]:
        """JSON view (one line of a batch output file)."""
        out: dict[str, Any] = {
            "input": self.input,
            "status": self.status,
            "answer": self.answer,
            "route": self.route,
            "output": self.output.to_dict(),
            "outputs": {k: v.to_dict() for k, v in self.outputs.items()},
            "latency_ms": round(self.latency_ms, 3),
        }
        if self.escalation is not None:
            out["escalation"] = self.escalation.to_dict()
        if trace:
            out["trace"] = [t.to_dict() for t in self.trace]
        return out
