"""``cascade``: try tiers in order; accept a tier's answer when it is confident enough.

YAML::

    - cascade:
        threshold: 0.55            # or one per tier except the last: [0.7, 0.5]
        tiers:
          - skill: intent
          - escalate: {reason: intent unclear}

A tier is accepted when its output did not abstain and its confidence is ≥ the threshold
(exactly at the threshold is accepted). The last tier is the fallback and is always
accepted. A rejected tier's output stays available under its id (an escalation packet
can show the low-confidence guess), and the rejection is what an escalation reports as
its reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import Field, StrictFloat, StrictInt

from slmstack.errors import ConfigError
from slmstack.types import Prediction
from slmstack.workflows.base import (
    At,
    Builder,
    CheckEnv,
    RunContext,
    Shape,
    SpecError,
    Step,
    StepField,
    StepSpec,
    meet,
    step_kinds,
)
from slmstack.workflows.trace import Decision, StepTrace, add_usage


class CascadeSpec(StepSpec):
    """YAML body of a ``cascade`` step."""

    tiers: list[StepField] = Field(min_length=2)
    # Strict: `true` or '0.5' is a slip to report, not a threshold to read as 1.0 or 0.5.
    threshold: StrictFloat | StrictInt | list[StrictFloat | StrictInt]
    id: str | None = None


def _thresholds(threshold: float | Sequence[float], n_tiers: int, where: str) -> list[float]:
    if isinstance(threshold, int | float):
        values = [float(threshold)] * (n_tiers - 1)
    else:
        values = [float(t) for t in threshold]
        if len(values) != n_tiers - 1:
            raise SpecError(
                where,
                f"{n_tiers} tiers need {n_tiers - 1} thresholds (the last tier is "
                f"the fallback and is always accepted); got {len(values)}: {values}",
            )
    for t in values:
        if not 0.0 <= t <= 1.0:
            raise SpecError(where, f"a threshold must be in [0, 1]; got {t}")
    return values


@step_kinds.register("cascade")
class CascadeStep(Step):
    """Small model first; the next tier only when the previous one is not sure."""

    kind = "cascade"
    Spec = CascadeSpec

    def __init__(
        self,
        tiers: Sequence[Step],
        *,
        threshold: float | Sequence[float],
        id: str | None = None,
    ):
        if len(tiers) < 2:
            raise ConfigError(f"a cascade needs at least 2 tiers; got {len(tiers)}")
        self.tiers = list(tiers)
        self.thresholds = _thresholds(threshold, len(self.tiers), "cascade.threshold")
        self.id = id

    @classmethod
    def from_spec(cls, spec: Any, build: Builder, at: At) -> Step:
        """Build from a :class:`CascadeSpec`."""
        tiers = [build(raw, f"{at('tiers')}[{i}]") for i, raw in enumerate(spec.tiers)]
        _thresholds(spec.threshold, len(tiers), at("threshold"))
        return cls(tiers, threshold=spec.threshold, id=spec.id)

    def check(self, env: CheckEnv, path: str) -> Shape:
        """Tier 0 always runs; a later tier sees the ids of the tiers before it."""
        results = []
        walk = env.fork()
        before = dict(env.owners)
        for i, tier in enumerate(self.tiers):
            # A later tier may write an earlier tier's id: it answers instead of it.
            walk.owners = dict(before)
            shape = tier.check(walk, f"{self.at(path, 'tiers')}[{i}]")
            if i == 0:
                env.adopt(walk)
            results.append((walk.fork(), shape))
            if shape.ends and i < len(self.tiers) - 1:
                env.error(
                    f"{self.at(path, 'tiers')}[{i}]",
                    "this tier always escalates, so the tiers after it never run; make it "
                    "the last tier",
                )
        env.join(results)
        return self.define(env, meet([shape for _, shape in results]), path)

    def execute(self, ctx: RunContext, path: str) -> StepTrace:
        """Run tiers until one is accepted (the last always is)."""
        children: list[StepTrace] = []
        output = Prediction()
        for i, tier in enumerate(self.tiers):
            trace = tier.run(ctx, f"{self.at(path, 'tiers')}[{i}]")
            children.append(trace)
            output = trace.output or Prediction()
            if not self._goes_on(i, tier, ctx, trace):
                break
        return self._trace(path, output, children)

    def execute_batch(self, ctxs: Sequence[RunContext], path: str) -> list[StepTrace]:
        """Run each tier once, on the texts the tiers before it did not settle."""
        children: list[list[StepTrace]] = [[] for _ in ctxs]
        outputs = [Prediction() for _ in ctxs]
        live = list(range(len(ctxs)))
        for i, tier in enumerate(self.tiers):
            if not live:
                break
            traces = tier.run_batch([ctxs[j] for j in live], f"{self.at(path, 'tiers')}[{i}]")
            going_on = []
            for j, trace in zip(live, traces, strict=True):
                children[j].append(trace)
                outputs[j] = trace.output or Prediction()
                if self._goes_on(i, tier, ctxs[j], trace):
                    going_on.append(j)
            live = going_on
        return [self._trace(path, o, c) for o, c in zip(outputs, children, strict=True)]

    def _goes_on(self, i: int, tier: Step, ctx: RunContext, trace: StepTrace) -> bool:
        """Judge tier ``i``'s output: record the decision and say whether the next tier runs."""
        if ctx.hand_off is not None:
            return False
        if i == len(self.tiers) - 1:  # the last tier answers unjudged: nothing is pending,
            ctx.rejection = ctx.decision = None  # so a later escalation cites its own why
            return False
        output = trace.output or Prediction()
        threshold = self.thresholds[i]
        shown = _shown(output.confidence, threshold)
        if output.abstained is not None:
            taken, why = "next", f"{tier.name} abstained ({output.abstained})"
        elif math.isnan(output.confidence):  # compares false with everything: not confident
            why = f"{tier.name} confidence is NaN (not a number), so not ≥ threshold {threshold}"
            taken = "next"
        elif output.confidence >= threshold:
            taken, why = "accept", f"confidence {shown} ≥ threshold {threshold}"
        else:
            taken, why = "next", f"{tier.name} confidence {shown} < threshold {threshold}"
        trace.decision = Decision(
            taken, why, label=output.label, confidence=output.confidence, threshold=threshold
        )
        if taken == "accept":
            ctx.rejection = None
            ctx.decision = trace.decision
            return False
        ctx.rejection = ctx.decision = trace.decision
        return True

    def _trace(self, path: str, output: Prediction, children: list[StepTrace]) -> StepTrace:
        return StepTrace(
            path,
            self.kind,
            self.name,
            output=output,
            usage=add_usage([c.usage for c in children]),
            children=children,
        )


def _shown(confidence: float, threshold: float) -> str:
    """3 decimals, or as many as it takes not to read equal to the threshold (0.4999999)."""
    short = f"{confidence:.3f}"
    # repr: the shortest digits that read back as this float, so never as the threshold.
    return short if float(short) != threshold or confidence == threshold else repr(confidence)
