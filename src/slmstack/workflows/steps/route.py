"""``route``: branch on a label, with a default branch for every other label.

A prediction that abstained takes ``default`` too, whatever label it carries: a skill
that declined to answer (an out-of-scope classifier keeps its best guess) is not
followed into a branch.

YAML::

    - route:
        on: intent                 # the id of an earlier step that produces a label
        branches:
          faq: {skill: faq}
          complaint: [{skill: sentiment}, {escalate: {reason: complaint}}]
        default: {escalate: {reason: unknown intent}}

``skill: NAME`` instead of ``on:`` runs that skill first and routes on its label (for
example a language detector sending queries to per-language FAQ answerers); its output
is published under the skill's name, for the branches and the steps after. A branch
written as a list is a sequence; a bare string is a skill.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from slmstack.errors import ConfigError, SkillError
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
    did_you_mean,
    meet,
    skill_labels,
    skill_outputs,
    step_kinds,
)
from slmstack.workflows.trace import Decision, StepTrace, add_usage


class RouteSpec(StepSpec):
    """YAML body of a ``route`` step."""

    on: str | None = None
    skill: str | None = None
    branches: dict[str, StepField]
    default: StepField  # required: a label outside the branches must still go somewhere
    id: str | None = None


@step_kinds.register("route")
class RouteStep(Step):
    """Send the run down the branch named by a label; unknown labels take ``default``."""

    kind = "route"
    Spec = RouteSpec

    def __init__(
        self,
        branches: Mapping[str, Step],
        default: Step,
        *,
        on: str | None = None,
        skill: str | None = None,
        id: str | None = None,
    ):
        if (on is None) == (skill is None):
            raise ConfigError(
                "a route needs exactly one of `on:` (the id of an earlier step) or `skill:` "
                f"(a skill to run and route on); got on={on!r}, skill={skill!r}"
            )
        if default is None:
            raise ConfigError("a route needs a `default:` branch for labels without a branch")
        self.branches = dict(branches)
        self.default = default
        self.on = on
        self.skill = skill
        self.id = id

    @classmethod
    def from_spec(cls, spec: Any, build: Builder, at: At) -> Step:
        """Build from a :class:`RouteSpec`."""
        if (spec.on is None) == (spec.skill is None):
            raise SpecError(
                at("on"),
                "a route needs exactly one of `on:` (the id of an earlier step) or "
                "`skill:` (a skill to run and route on)",
            )
        if spec.default is None:
            raise SpecError(at("default"), "missing default branch; add `default:`")
        branches = {
            label: build(raw, f"{at('branches')}.{label}") for label, raw in spec.branches.items()
        }
        default = build(spec.default, at("default"))
        return cls(branches, default, on=spec.on, skill=spec.skill, id=spec.id)

    @property
    def name(self) -> str:
        """Shown as ``route on <source>``."""
        return self.id or f"route on {self.on or self.skill}"

    def check(self, env: CheckEnv, path: str) -> Shape:
        """The label source must produce labels; branch labels must be labels it can emit."""
        labels: tuple[str, ...] | None = None
        if self.skill is not None:
            skill = env.check_skill(self.skill, self.at(path, "skill"))
            published = Shape(None)
            if skill is not None:
                self._check_label_source(skill_outputs(skill), f"skill {self.skill!r}", env, path)
                labels = skill_labels(skill)
                published = Shape(skill_outputs(skill), labels=labels)
            # Its output is published under the skill's name, for the branches and after.
            env.defined[self.skill] = published
            env.owners.setdefault(self.skill, (self, self.at(path, "skill")))
            env.seen.setdefault(self.skill, self.at(path, "skill"))
        else:
            assert self.on is not None
            shape = env.defined.get(self.on)
            if shape is None:
                env.error(self.at(path, "on"), env.no_id(self.on))
            else:
                self._check_label_source(shape.fields, f"step {self.on!r}", env, path)
                labels = shape.labels
        if labels is not None:
            for label in self.branches:
                if label not in labels:
                    env.error(
                        f"{self.at(path, 'branches')}.{label}",
                        f"{label!r} is not a label the route's classifier can emit"
                        + did_you_mean(label, labels),
                    )
        results = []
        for key, step in [*self.branches.items(), ("default", self.default)]:
            sub = env.fork()
            where = self._where(path, key)
            results.append((sub, step.check(sub, where)))
        env.join(results)
        return self.define(env, meet([shape for _, shape in results]), path)

    def _where(self, path: str, key: str) -> str:
        if key == "default":
            return self.at(path, "default")
        return f"{self.at(path, 'branches')}.{key}"

    @staticmethod
    def _check_label_source(
        fields: frozenset[str] | None, what: str, env: CheckEnv, path: str
    ) -> None:
        if fields is not None and "label" not in fields:
            env.error(
                path,
                f"type mismatch: a route needs a label, but {what} produces "
                f"{', '.join(sorted(fields))}",
            )

    def execute(self, ctx: RunContext, path: str) -> StepTrace:
        """Pick the branch for the label and run it."""
        return self.execute_batch([ctx], path)[0]

    def execute_batch(self, ctxs: Sequence[RunContext], path: str) -> list[StepTrace]:
        """Label the batch (one ``predict`` for ``skill:``), split it by branch, run each part.

        Each branch runs once, on the texts that took it, in the order the branches are
        declared (``default`` last).
        """
        if not ctxs:
            return []
        first: list[list[StepTrace]] = [[] for _ in ctxs]
        if self.skill is not None:
            start = time.perf_counter()
            preds = ctxs[0].runtime.skills[self.skill].predict([c.input for c in ctxs])
            share = (time.perf_counter() - start) * 1000 / len(ctxs)  # per-item share
            if len(preds) != len(ctxs):
                raise SkillError(
                    f"skill {self.skill!r} returned {len(preds)} predictions for {len(ctxs)} "
                    f"{'text' if len(ctxs) == 1 else 'texts'}; a skill's predict must return "
                    "exactly one Prediction per input"
                )
            for ctx, pred, children in zip(ctxs, preds, first, strict=True):
                where = self.at(path, "skill")
                children.append(
                    StepTrace(
                        where, "skill", self.skill, output=pred, latency_ms=share, usage=pred.usage
                    )
                )
                ctx.outputs[self.skill] = pred
        else:
            preds = [c.outputs.get(self.on or "", Prediction()) for c in ctxs]
        # None is the default branch (a branch may be labelled "default", too).
        groups: dict[str | None, list[int]] = {key: [] for key in [*self.branches, None]}
        decisions = []
        for j, (ctx, pred) in enumerate(zip(ctxs, preds, strict=True)):
            key, decision = self._decide(pred)
            ctx.decision = decision
            decisions.append(decision)
            groups[key].append(j)
        branches: dict[int, StepTrace] = {}
        for key, members in groups.items():
            step = self.default if key is None else self.branches[key]
            where = self._where(path, "default" if key is None else key)
            traces = step.run_batch([ctxs[j] for j in members], where)
            branches.update(zip(members, traces, strict=True))
        out = []
        for j, decision in enumerate(decisions):
            children = [*first[j], branches[j]]
            out.append(
                StepTrace(
                    path,
                    self.kind,
                    self.name,
                    output=branches[j].output,
                    decision=decision,
                    usage=add_usage([c.usage for c in children]),
                    children=children,
                )
            )
        return out

    def _decide(self, pred: Prediction) -> tuple[str | None, Decision]:
        """The branch ``pred``'s label takes (``None``: the default), and the decision."""
        label = pred.label
        if label is not None and label in self.branches and pred.abstained is None:
            why = f"label {label!r} → branch {label!r}"
            return label, Decision(label, why, label=label, confidence=pred.confidence)
        # A skill that abstained declined to answer; its best guess (an out-of-scope
        # classifier keeps one) is not acted on.
        if pred.abstained is not None:
            guess = f"; its guess {label!r} is not acted on" if label is not None else ""
            why = f"abstained: {pred.abstained}{guess} → default"
        else:
            why = (
                f"label {label!r} has no branch → default"
                if label is not None
                else ("no label → default")
            )
        return None, Decision("default", why, label=label, confidence=pred.confidence)
