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


def run_steps_batch(
    steps: Sequence[Step], ctxs: Sequence[RunContext], path: str
) -> list[list[StepTrace]]:
    """``run_steps`` for a batch: each step runs once on the texts that have not handed off."""
    traces: list[list[StepTrace]] = [[] for _ in ctxs]
    live = list(range(len(ctxs)))
    for i, step in enumerate(steps):
        if not live:
            break
        got = step.run_batch([ctxs[j] for j in live], f"{path}[{i}]")
        for j, trace in zip(live, got, strict=True):
            traces[j].append(trace)
        live = [j for j in live if ctxs[j].hand_off is None]
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
        return self.define(env, check_steps(self.steps, env, self.at(path, "steps")), path)

    def execute(self, ctx: RunContext, path: str) -> StepTrace:
        """Run the steps; the output is the last one's."""
        return self._trace(path, run_steps(self.steps, ctx, self.at(path, "steps")))

    def execute_batch(self, ctxs: Sequence[RunContext], path: str) -> list[StepTrace]:
        """Run each step once for the texts still running (see :func:`run_steps_batch`)."""
        runs = run_steps_batch(self.steps, ctxs, self.at(path, "steps"))
        return [self._trace(path, children) for children in runs]

    def _trace(self, path: str, children: list[StepTrace]) -> StepTrace:
        last = children[-1].output if children else None
        return StepTrace(
            path,
            self.kind,
            self.name,
            output=last or Prediction(),
            usage=add_usage([c.usage for c in children]),
            children=children,
        )
