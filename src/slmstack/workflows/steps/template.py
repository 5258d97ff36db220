"""``template``: write a reply from earlier outputs, optionally asking for what is missing.

YAML::

    - template:
        id: reply
        text: "To look into your account we still need {missing}."
        complete: "Thanks, we have {found}; an agent will confirm shortly."
        require:
          from: entities                # a step that produces spans
          labels: {ACCOUNT: "your account number", EMAIL: "the e-mail on the account"}

Without ``require`` the step renders ``text``. With it, ``{missing}`` lists the
descriptions of the required labels the entity step did not find and ``{found}`` the
ones it did; when nothing is missing, ``complete`` is rendered instead of ``text``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ConfigDict, Field

from slmstack.types import Prediction
from slmstack.workflows import templates
from slmstack.workflows.base import (
    ALWAYS,
    At,
    Builder,
    CheckEnv,
    RunContext,
    Shape,
    Step,
    StepSpec,
    step_kinds,
)
from slmstack.workflows.trace import Decision, StepTrace


class RequireSpec(StepSpec):
    """Labels an entity step must find, with how to ask for each."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    source: str = Field(alias="from")
    labels: dict[str, str] = Field(min_length=1)


class TemplateSpec(StepSpec):
    """YAML body of a ``template`` step."""

    text: str
    complete: str | None = None
    require: RequireSpec | None = None
    id: str | None = None


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


@step_kinds.register("template")
class TemplateStep(Step):
    """Render text from earlier outputs; ask for required entities that are missing."""

    kind = "template"
    Spec = TemplateSpec
    shorthand = "text"

    def __init__(
        self,
        text: str,
        *,
        complete: str | None = None,
        require_from: str | None = None,
        require: dict[str, str] | None = None,
        id: str | None = None,
    ):
        self.text = text
        self.complete = complete
        self.require_from = require_from
        self.require = dict(require or {})
        self.id = id
        self._text = templates.parse(text)
        self._complete = templates.parse(complete) if complete is not None else None

    @classmethod
    def from_spec(cls, spec: Any, build: Builder, at: At) -> Step:
        """Build from a :class:`TemplateSpec`."""
        req = spec.require
        return cls(
            spec.text,
            complete=spec.complete,
            require_from=req.source if req else None,
            require=req.labels if req else None,
            id=spec.id,
        )

    def check(self, env: CheckEnv, path: str) -> Shape:
        """Templates must refer to earlier steps; ``require.from`` must produce spans."""
        local = ("missing", "found") if self.require_from else ()
        scoped = env.fork()
        for name in local:
            scoped.defined[name] = Shape(frozenset({"text"}))
        templates.check_refs(self._text, scoped, self.at(path, "text"))
        if self._complete is not None:
            templates.check_refs(self._complete, scoped, self.at(path, "complete"))
        if self.require_from is not None:
            shape = env.defined.get(self.require_from)
            if shape is None:
                env.error(f"{self.at(path, 'require')}.from", env.no_id(self.require_from))
            elif shape.fields is not None and "spans" not in shape.fields:
                env.error(
                    f"{self.at(path, 'require')}.from",
                    f"type mismatch: require needs spans, but step {self.require_from!r} "
                    f"produces {', '.join(sorted(shape.fields))}",
                )
        return self.define(env, Shape(frozenset({"text", "data"}) | ALWAYS), path)

    def execute(self, ctx: RunContext, path: str) -> StepTrace:
        """Render ``text`` (or ``complete`` when every required entity was found)."""
        outputs: dict[str, Prediction] = ctx.outputs
        decision = None
        data: dict[str, Any] = {}
        parts = self._text
        if self.require_from is not None:
            source = ctx.outputs.get(self.require_from, Prediction())
            found = {s.label: s.text for s in source.spans if s.label in self.require}
            missing = [desc for label, desc in self.require.items() if label not in found]
            data = {"found": found, "missing": [k for k in self.require if k not in found]}
            outputs = dict(ctx.outputs)
            outputs["missing"] = Prediction(text=_join(missing))
            outputs["found"] = Prediction(text=_join([f"{k}: {v}" for k, v in found.items()]))
            if not missing and self._complete is not None:
                parts = self._complete
            decision = Decision(
                "complete" if not missing else "ask",
                f"missing {', '.join(data['missing'])}" if missing else "all required found",
            )
        text = templates.render(parts, ctx.input, outputs)
        output = Prediction(text=text, confidence=1.0, data=data)
        return StepTrace(path, self.kind, self.name, output=output, decision=decision)

    def execute_batch(self, ctxs: Sequence[RunContext], path: str) -> list[StepTrace]:
        """Render for each text: the work is per text and calls no model, so nothing is shared."""
        return [self.execute(ctx, path) for ctx in ctxs]
