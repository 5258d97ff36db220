"""``escalate``: end the run with a hand-off to a human queue or to a declared LLM.

YAML::

    - escalate:
        reason: complaint
        message: "A colleague will get back to you within one working day."
    - escalate: {to: big_llm, reason: out of scope, prompt: "Answer briefly: {input}"}

``to: human`` (the default) writes one hand-off packet to the workflow's inbox once the
run is over: the text, the intent, the sentiment, the entities, the summary (taken from
the steps with ids ``intent``, ``sentiment``, ``entities``, ``summary``, or the ids given
here), the reason, why it escalated, and the whole trace. ``to: NAME`` sends the text to
the backend declared under that name; nothing is ever sent to an LLM that the workflow
does not name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from slmstack.backends.base import ChatMessage, CompletionRequest
from slmstack.types import Prediction
from slmstack.workflows import templates
from slmstack.workflows.base import (
    ALWAYS,
    At,
    Builder,
    CheckEnv,
    HandOff,
    RunContext,
    Shape,
    Step,
    StepSpec,
    did_you_mean,
    step_kinds,
)
from slmstack.workflows.trace import Decision, StepTrace

_PACKET_FIELDS = {"intent": "label", "sentiment": "label", "entities": "spans", "summary": "text"}
_DEFAULT_PROMPT, _DEFAULT_MAX_TOKENS = "{input}", 256  # what an LLM target gets unless set


class EscalateSpec(StepSpec):
    """YAML body of an ``escalate`` step."""

    reason: str = Field(min_length=1)  # what the packet or the ledger says it was for
    to: str = "human"
    message: str | None = None  # template: the reply the user gets while a human takes over
    prompt: str = _DEFAULT_PROMPT  # template: what an LLM target is asked
    system: str | None = None  # system prompt for an LLM target
    max_tokens: int = Field(_DEFAULT_MAX_TOKENS, ge=1)
    intent: str = "intent"
    sentiment: str = "sentiment"
    entities: str = "entities"
    summary: str = "summary"
    id: str | None = None


def packet_fields(out: Mapping[str, Prediction], ids: Mapping[str, str]) -> dict[str, Any]:
    """A packet's fields read from step outputs: ``ids`` maps a field to its step's id.

    ``intent`` gives the intent and its confidence, ``sentiment`` the sentiment,
    ``entities`` the spans and ``summary`` the text; a field not in ``ids`` is left out.
    """
    found: dict[str, Any] = {}
    if "intent" in ids:
        intent = out.get(ids["intent"])
        found["intent"] = intent.label if intent else None
        found["intent_confidence"] = intent.confidence if intent else None
    if "sentiment" in ids:
        sentiment = out.get(ids["sentiment"])
        found["sentiment"] = sentiment.label if sentiment else None
    if "entities" in ids:
        entities = out.get(ids["entities"])
        spans = entities.spans if entities else ()
        found["entities"] = tuple({"label": s.label, "text": s.text} for s in spans)
    if "summary" in ids:
        summary = out.get(ids["summary"])
        found["summary"] = summary.text if summary else None
    return found


@step_kinds.register("escalate")
class EscalateStep(Step):
    """Hand the request off and end the run."""

    kind = "escalate"
    Spec = EscalateSpec

    def __init__(
        self,
        reason: str,
        *,
        to: str = "human",
        message: str | None = None,
        prompt: str = _DEFAULT_PROMPT,
        system: str | None = None,
        max_tokens: int = _DEFAULT_MAX_TOKENS,
        fields: dict[str, str] | None = None,
        id: str | None = None,
    ):
        self.reason = reason
        self.to = to
        self.message = message
        self.prompt = prompt
        self.system = system
        self.max_tokens = max_tokens
        self.fields = {k: k for k in _PACKET_FIELDS} | (fields or {})
        self.id = id
        self._message = templates.parse(message) if message is not None else None
        self._prompt = templates.parse(prompt)

    @classmethod
    def from_spec(cls, spec: Any, build: Builder, at: At) -> Step:
        """Build from an :class:`EscalateSpec`."""
        fields = {k: getattr(spec, k) for k in _PACKET_FIELDS}
        return cls(
            spec.reason,
            to=spec.to,
            message=spec.message,
            prompt=spec.prompt,
            system=spec.system,
            max_tokens=spec.max_tokens,
            fields=fields,
            id=spec.id,
        )

    @property
    def name(self) -> str:
        """``escalate → human`` or ``escalate → <backend>``."""
        return self.id or f"escalate → {self.to}"

    def check(self, env: CheckEnv, path: str) -> Shape:
        """The target must be ``human`` or a declared backend; packet fields must fit."""
        if self.to != "human" and self.to not in env.backends:
            env.error(
                self.at(path, "to"),
                f"unknown escalation target {self.to!r}; use 'human' or a backend declared "
                f"under `backends:`{did_you_mean(self.to, ['human', *env.backends])}",
            )
        self._check_options(env, path)
        for part, step_id in self.fields.items():
            shape = env.defined.get(step_id)
            if shape is None:
                if step_id != part:  # a default id that is absent just leaves the field empty
                    env.error(self.at(path, part), env.no_id(step_id))
                continue
            need = _PACKET_FIELDS[part]
            if shape.fields is not None and need not in shape.fields:
                env.error(
                    self.at(path, part),
                    f"type mismatch: the packet's {part} needs '{need}', but step {step_id!r} "
                    f"produces {', '.join(sorted(shape.fields))}",
                )
        if self._message is not None:
            templates.check_refs(self._message, env, self.at(path, "message"))
        templates.check_refs(self._prompt, env, self.at(path, "prompt"))
        self.define(env, Shape(frozenset({"text", "data"}) | ALWAYS), path)
        return Shape(frozenset({"text", "data"}), ends=True)

    def _check_options(self, env: CheckEnv, path: str) -> None:
        """An option the target would ignore is an error: the writer expects it to act."""
        if self.to != "human":
            if self.message is not None:
                env.error(
                    self.at(path, "message"),
                    "`message:` is the reply while a person takes over, but the LLM target "
                    f"{self.to!r} answers itself; remove `message:` or escalate `to: human`",
                )
            return
        set_for_llm = {
            "prompt": self.prompt != _DEFAULT_PROMPT,
            "system": self.system is not None,
            "max_tokens": self.max_tokens != _DEFAULT_MAX_TOKENS,
        }
        for key in [k for k, given in set_for_llm.items() if given]:
            env.error(
                self.at(path, key),
                f"`{key}:` is sent to an LLM, but this step escalates to a person (`to: "
                f"human`), who gets a packet; remove `{key}:` or set `to:` to a backend",
            )

    def packet_fields(self, out: Mapping[str, Prediction]) -> dict[str, Any]:
        """The packet's intent, sentiment, entities and summary, read from step outputs."""
        return packet_fields(out, self.fields)

    def _why(self, ctx: RunContext) -> str:
        if ctx.rejection is not None:
            return ctx.rejection.why
        if ctx.decision is not None:
            return ctx.decision.why
        return "the workflow escalates unconditionally here"

    def execute(self, ctx: RunContext, path: str) -> StepTrace:
        """Prepare the packet (human) or ask the backend (LLM), and end the run."""
        why = self._why(ctx)
        decision = Decision(self.to, f"{self.reason}: {why}")
        if self.to == "human":
            from slmstack.workflows.packet import Packet

            packet = Packet(
                workflow=ctx.runtime.workflow,
                text=ctx.input,
                reason=self.reason,
                why=why,
                **self.packet_fields(ctx.outputs),
            )
            ctx.hand_off = HandOff("human", self.reason, why, packet, fill=self.packet_fields)
            text = None
            if self._message is not None:
                text = templates.render(self._message, ctx.input, ctx.outputs)
            output = Prediction(
                text=text, confidence=1.0, data={"escalated_to": "human", "reason": self.reason}
            )
            return StepTrace(path, self.kind, self.name, output=output, decision=decision)
        backend = ctx.runtime.backends[self.to]
        messages = [ChatMessage("system", self.system)] if self.system else []
        messages.append(ChatMessage("user", templates.render(self._prompt, ctx.input, ctx.outputs)))
        completion = backend.complete(
            CompletionRequest(messages=messages, max_tokens=self.max_tokens)
        )
        ctx.hand_off = HandOff(self.to, self.reason, why)
        output = Prediction(
            text=completion.text,
            confidence=1.0,
            usage=completion.usage,
            data={
                "escalated_to": self.to,
                "reason": self.reason,
                "model": completion.model,
                "finish_reason": completion.finish_reason,
                "failed_over": list(completion.failed_over),
            },
            warnings=(
                *(f"failed over: {f}" for f in completion.failed_over),
                *(
                    [f"the answer was cut at max_tokens={self.max_tokens}; raise max_tokens"]
                    if completion.finish_reason == "length"
                    else []
                ),
            ),
        )
        return StepTrace(
            path, self.kind, self.name, output=output, decision=decision, usage=completion.usage
        )

    def execute_batch(self, ctxs: Sequence[RunContext], path: str) -> list[StepTrace]:
        """Hand off each text, in input order, as ``execute`` does.

        A packet each (the engine files them after the batch), or one LLM request each,
        since a backend completes one request at a time; each text's trace keeps the time
        of its own request (see ``Step.execute_batch``).
        """
        return super().execute_batch(ctxs, path)
