"""``parallel``: fan out to branches on threads, then join their outputs.

YAML::

    - parallel:
        id: analysis
        steps:
          - skill: sentiment
          - skill: entities

Each branch sees the outputs defined before the fan-out, not each other's. After the
join every branch's named outputs are available, and the step's own output holds them
in ``data`` keyed by id, with the lowest branch confidence (a join is only as sure as
its least sure part). When a branch hands off, the output's ``text`` is that branch's
reply (an escalation's ``message``, or the LLM's answer), as it would be outside a
``parallel``. Skills release the GIL inside torch, so threads overlap the work.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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


class ParallelSpec(StepSpec):
    """YAML body of a ``parallel`` step (a bare list is accepted too)."""

    steps: list[StepField] = Field(min_length=2)
    id: str | None = None
    max_workers: int | None = Field(default=None, ge=1)  # default: one thread per branch


@step_kinds.register("parallel")
class ParallelStep(Step):
    """Run branches at once on a thread pool; join when all are done."""

    kind = "parallel"
    Spec = ParallelSpec
    shorthand = "steps"
    concurrent = True  # in a batch, a text's latency is its slowest branch's

    def __init__(
        self, steps: Sequence[Step], *, id: str | None = None, max_workers: int | None = None
    ):
        self.steps = list(steps)
        self.id = id
        self.max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()  # runs of one workflow may share it across threads

    @classmethod
    def from_spec(cls, spec: Any, build: Builder, at: At) -> Step:
        """Build from a :class:`ParallelSpec`."""
        steps = [build(raw, f"{at('steps')}[{i}]") for i, raw in enumerate(spec.steps)]
        return cls(steps, id=spec.id, max_workers=spec.max_workers)

    def check(self, env: CheckEnv, path: str) -> Shape:
        """Branches must not write the same id, and cannot see each other's outputs."""
        owner: dict[str, int] = {}
        branches = []
        for i, step in enumerate(self.steps):
            sub = env.fork()
            before = set(sub.defined)
            shape = step.check(sub, f"{self.at(path, 'steps')}[{i}]")
            for key in set(sub.defined) - before:
                if key in owner:
                    env.error(
                        f"{self.at(path, 'steps')}[{i}]",
                        f"branches {owner[key]} and {i} both write id {key!r}; parallel "
                        "branches must write different ids (set `id:` on one of them)",
                    )
                owner[key] = i
            branches.append((sub, shape))
        # Unlike a route, every branch runs, so the union of their ids is defined.
        for sub, shape in branches:
            if not shape.ends:
                env.adopt(sub)
        ends = any(shape.ends for _, shape in branches)
        return self.define(env, Shape(frozenset({"data", "confidence"}), ends=ends), path)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.max_workers or len(self.steps),
                    thread_name_prefix=f"slmstack-{self.name}",
                )
            return self._pool

    def close(self) -> None:
        """Shut the branches' thread pool down (a later run starts a new one)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        super().close()

    def execute(self, ctx: RunContext, path: str) -> StepTrace:
        """Fan out, wait for every branch, merge outputs in branch order."""
        forks = [ctx.fork() for _ in self.steps]
        futures = [
            self._executor().submit(step.run, fork, f"{self.at(path, 'steps')}[{i}]")
            for i, (step, fork) in enumerate(zip(self.steps, forks, strict=True))
        ]
        return self._join(ctx, forks, [f.result() for f in futures], path)

    def execute_batch(self, ctxs: Sequence[RunContext], path: str) -> list[StepTrace]:
        """Each branch runs once, on its own thread, over the whole batch; then each text joins.

        As in ``execute``, each branch of each text works on a fork of its context.
        """
        forks = [[ctx.fork() for ctx in ctxs] for _ in self.steps]  # [branch][text]
        futures = [
            self._executor().submit(step.run_batch, branch, f"{self.at(path, 'steps')}[{i}]")
            for i, (step, branch) in enumerate(zip(self.steps, forks, strict=True))
        ]
        traces = [f.result() for f in futures]  # [branch][text]
        return [
            self._join(ctx, [b[j] for b in forks], [t[j] for t in traces], path)
            for j, ctx in enumerate(ctxs)
        ]

    def _join(
        self, ctx: RunContext, forks: list[RunContext], children: list[StepTrace], path: str
    ) -> StepTrace:
        """Merge the branches' outputs and decisions into ``ctx``, in branch order."""
        joined: dict[str, Any] = {}
        reply = Prediction()  # the hand-off's reply: a person's `message` or the LLM's answer
        for step, fork, trace in zip(self.steps, forks, children, strict=True):
            ctx.outputs.update(fork.outputs)
            if trace.output is not None:
                joined[step.id or step.name] = trace.output.to_dict()
            if fork.rejection is not None:
                ctx.rejection = fork.rejection
            if fork.decision is not None:
                ctx.decision = fork.decision
            if ctx.hand_off is None and fork.hand_off is not None:
                ctx.hand_off = fork.hand_off
                reply = trace.output or reply
        confidences = [t.output.confidence for t in children if t.output is not None]
        output = Prediction(
            confidence=min(confidences, default=0.0),
            data=joined,
            text=reply.text,
            warnings=reply.warnings,
        )
        return StepTrace(
            path,
            self.kind,
            self.name,
            output=output,
            usage=add_usage([c.usage for c in children]),
            children=children,
        )
