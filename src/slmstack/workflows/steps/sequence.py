"""``sequence``: run steps one after another; the output is the last step's output.

YAML::

    - sequence:
        - skill: sentiment
        - skill: entities
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from slmstack.types import Prediction
from slmstack.workflows.base import (
    At,
    Builder,
    CheckEnv,
    RunContext,
    Shape,
    Step,
    StepField,
    StepSpec,
    step_kinds,
)
from slmstack.workflows.trace import StepTrace, add_usage


class SequenceSpec(StepSpec):
    """YAML body of a ``sequence`` step (a bare list is accepted too)."""

    steps: list[StepField] = Field(min_length=1)
    id: str | None = None


def check_steps(steps: Sequence[Step], env: CheckEnv, path: str) -> Shape:
    """Check steps in order; what follows an ending step is unreachable."""
    shape = Shape(frozenset())
    for i, step in enumerate(steps):
        if shape.ends:
            env.error(f"{path}[{i}]", "unreachable: the step before it always escalates")
            break
        shape = step.check(env, f"{path}[{i}]")
    return shape


def run_steps(steps: Sequence[Step], ctx: RunContext, path: str) -> list[StepTrace]:
    """Run steps in order until one hands off."""
    traces = []
    for i, step in enumerate(steps):
        traces.append(step.run(ctx, f"{path}[{i}]"))
        if ctx.hand_off is not None:
            break
    return traces


@step_kinds.register("sequence")
class SequenceStep(Step):
    """Steps in order; stops early when one escalates."""

    kind = "sequence"
    Spec = SequenceSpec
    shorthand = "steps"

    def __init__(self, steps: Sequence[Step], *, id: str | None = None):
        self.steps = list(steps)
        self.id = id

    @classmethod
    def from_spec(cls, spec: Any, build: Builder, at: At) -> Step:
        """Build from a :class:`SequenceSpec`."""
        steps = [build(raw, f"{at('steps')}[{i}]") for i, raw in enumerate(spec.steps)]
        return cls(steps, id=spec.id)

    def check(self, env: CheckEnv, path: str) -> Shape:
        """Check each step in order."""
        return self.define(env, check_steps(self.steps, env, self.at(path, "steps")))

    def execute(self, ctx: RunContext, path: str) -> StepTrace:
        """Run the steps; the output is the last one's."""
        children = run_steps(self.steps, ctx, self.at(path, "steps"))
        last = children[-1].output if children else None
        return StepTrace(
            path,
            self.kind,
            self.name,
            output=last or Prediction(),
            usage=add_usage([c.usage for c in children]),
            children=children,
        )
