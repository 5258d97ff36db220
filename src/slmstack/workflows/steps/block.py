"""``block``: run a named block of steps declared once under ``blocks:``.

YAML::

    blocks:
      hand_off:
        - escalate: {reason: needs a person}
    steps:
      - cascade: {threshold: 0.5, tiers: [{skill: intent}, {block: hand_off}]}

Blocks may use other blocks; a block that reaches itself is a cycle and is rejected
when the workflow is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slmstack.workflows.base import (
    At,
    Builder,
    CheckEnv,
    RunContext,
    Shape,
    Step,
    StepSpec,
    did_you_mean,
    step_kinds,
)
from slmstack.workflows.steps.sequence import check_steps, run_steps, run_steps_batch
from slmstack.workflows.trace import StepTrace, add_usage


class BlockSpec(StepSpec):
    """YAML body of a ``block`` step."""

    use: str
    id: str | None = None


@step_kinds.register("block")
class BlockStep(Step):
    """Run the block called ``use``."""

    kind = "block"
    Spec = BlockSpec
    shorthand = "use"

    def __init__(self, use: str, *, id: str | None = None):
        self.use = use
        self.id = id

    @classmethod
    def from_spec(cls, spec: Any, build: Builder, at: At) -> Step:
        """Build from a :class:`BlockSpec`."""
        return cls(spec.use, id=spec.id)

    @property
    def name(self) -> str:
        """``block <name>``."""
        return self.id or f"block {self.use}"

    def check(self, env: CheckEnv, path: str) -> Shape:
        """The block must exist and must not reach itself."""
        env.used_blocks.add(self.use)
        block = env.blocks.get(self.use)
        if block is None:
            env.error(path, f"unknown block {self.use!r}{did_you_mean(self.use, list(env.blocks))}")
            return Shape(None)
        if self.use in env.block_stack:
            cycle = " → ".join([*env.block_stack, self.use])
            env.error(path, f"cycle: block {cycle}; a block cannot use itself, even indirectly")
            return Shape(None)
        env.block_stack = (*env.block_stack, self.use)
        try:
            shape = check_steps(block, env, f"blocks.{self.use}")
        finally:
            env.block_stack = env.block_stack[:-1]
        return self.define(env, shape, path)

    def execute(self, ctx: RunContext, path: str) -> StepTrace:
        """Run the block's steps."""
        return self._trace(path, run_steps(ctx.runtime.blocks[self.use], ctx, f"blocks.{self.use}"))

    def execute_batch(self, ctxs: Sequence[RunContext], path: str) -> list[StepTrace]:
        """Run the block's steps once for the batch (see :func:`run_steps_batch`)."""
        if not ctxs:
            return []
        steps = ctxs[0].runtime.blocks[self.use]
        runs = run_steps_batch(steps, ctxs, f"blocks.{self.use}")
        return [self._trace(path, children) for children in runs]

    def _trace(self, path: str, children: list[StepTrace]) -> StepTrace:
        return StepTrace(
            path,
            self.kind,
            self.name,
            output=children[-1].output if children else None,
            usage=add_usage([c.usage for c in children]),
            children=children,
        )
