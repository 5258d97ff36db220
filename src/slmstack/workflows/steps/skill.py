"""``skill``: run one skill on the input (or on a template over earlier outputs).

YAML::

    - skill: intent                      # shorthand: id = skill name
    - skill: {use: summarizer, id: summary, input: "{input} Sentiment: {sentiment.label}"}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slmstack.errors import SkillError
from slmstack.workflows import templates
from slmstack.workflows.base import (
    At,
    Builder,
    CheckEnv,
    RunContext,
    Shape,
    Step,
    StepSpec,
    skill_labels,
    skill_outputs,
    step_kinds,
)
from slmstack.workflows.trace import StepTrace


class SkillSpec(StepSpec):
    """YAML body of a ``skill`` step."""

    use: str
    id: str | None = None  # defaults to the skill name
    input: str | None = None  # template; defaults to the workflow input


@step_kinds.register("skill")
class SkillStep(Step):
    """Run ``skill`` and publish its prediction under ``id`` (the skill name by default).

    Example:
        >>> SkillStep("intent")  # doctest: +SKIP
    """

    kind = "skill"
    Spec = SkillSpec
    shorthand = "use"

    def __init__(self, use: str, *, id: str | None = None, input: str | None = None):
        self.use = use
        self.id = id or use
        self.input = input
        self._parts = templates.parse(input) if input is not None else None

    @classmethod
    def from_spec(cls, spec: Any, build: Builder, at: At) -> Step:
        """Build from a :class:`SkillSpec`."""
        return cls(spec.use, id=spec.id, input=spec.input)

    @property
    def name(self) -> str:
        """The skill name, and the id when it differs."""
        return self.use if self.id == self.use else f"{self.id} ({self.use})"

    def check(self, env: CheckEnv, path: str) -> Shape:
        """The skill must exist; an input template must refer to earlier steps."""
        skill = env.check_skill(self.use, self.at(path, "use"))
        if self._parts is not None:
            templates.check_refs(self._parts, env, self.at(path, "input"))
        if skill is None:
            return self.define(env, Shape(None), path)
        return self.define(env, Shape(skill_outputs(skill), labels=skill_labels(skill)), path)

    def execute(self, ctx: RunContext, path: str) -> StepTrace:
        """Predict on the input (or the rendered template)."""
        return self.execute_batch([ctx], path)[0]

    def execute_batch(self, ctxs: Sequence[RunContext], path: str) -> list[StepTrace]:
        """One ``predict`` call with every text of the batch (inputs or rendered templates)."""
        if not ctxs:
            return []
        skill = ctxs[0].runtime.skills[self.use]
        texts = [self._text(ctx) for ctx in ctxs]
        preds = skill.predict(texts)
        if len(preds) != len(texts):
            raise SkillError(
                f"skill {self.use!r} returned {len(preds)} predictions for {len(texts)} "
                f"{'text' if len(texts) == 1 else 'texts'}; a skill's predict must return "
                "exactly one Prediction per input"
            )
        return [StepTrace(path, self.kind, self.name, output=p, usage=p.usage) for p in preds]

    def _text(self, ctx: RunContext) -> str:
        if self._parts is None:
            return ctx.input
        return templates.render(self._parts, ctx.input, ctx.outputs)
