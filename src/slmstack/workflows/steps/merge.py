"""``merge``: build a structured record from earlier outputs.

YAML::

    - merge:
        id: record
        fields:
          sentiment: "{sentiment.label}"
          entities: "{entities.spans}"       # a lone placeholder keeps its raw value (a list)
          note: "{sentiment.label} review about {entities.spans}"

The output's ``data`` holds the record; its confidence is the lowest confidence among
the steps it reads, so a cascade on a merge is only as sure as its least sure input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

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
from slmstack.workflows.trace import StepTrace


class MergeSpec(StepSpec):
    """YAML body of a ``merge`` step."""

    fields: dict[str, str] = Field(min_length=1)
    id: str | None = None


@step_kinds.register("merge")
class MergeStep(Step):
    """One record from several outputs."""

    kind = "merge"
    Spec = MergeSpec
    shorthand = "fields"

    def __init__(self, fields: Mapping[str, str], *, id: str | None = None):
        self.fields = dict(fields)
        self.id = id
        self._parsed = {k: templates.parse(v) for k, v in self.fields.items()}

    @classmethod
    def from_spec(cls, spec: Any, build: Builder, at: At) -> Step:
        """Build from a :class:`MergeSpec`."""
        return cls(spec.fields, id=spec.id)

    def check(self, env: CheckEnv, path: str) -> Shape:
        """Every field's template must refer to earlier steps."""
        for key, parts in self._parsed.items():
            templates.check_refs(parts, env, f"{self.at(path, 'fields')}.{key}")
        return self.define(env, Shape(frozenset({"data"}) | ALWAYS), path)

    def execute(self, ctx: RunContext, path: str) -> StepTrace:
        """Render each field; a lone placeholder keeps its raw value."""
        record: dict[str, Any] = {}
        sources: set[str] = set()
        for key, parts in self._parsed.items():
            refs = [p for p in parts if isinstance(p, templates.Ref)]
            sources.update(r.step for r in refs if r.step != "input")
            if len(parts) == 1 and refs:
                record[key] = templates.value(refs[0], ctx.input, ctx.outputs)
            else:
                record[key] = templates.render(parts, ctx.input, ctx.outputs)
        confidences = [ctx.outputs[s].confidence for s in sources if s in ctx.outputs]
        output = Prediction(confidence=min(confidences, default=1.0), data=record)
        return StepTrace(path, self.kind, self.name, output=output)

    def execute_batch(self, ctxs: Sequence[RunContext], path: str) -> list[StepTrace]:
        """Merge for each text: the work is per text and calls no model, so nothing is shared."""
        return [self.execute(ctx, path) for ctx in ctxs]
