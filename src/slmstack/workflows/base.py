"""The step contract, the run context and the validation environment.

A step kind is a class with a pydantic ``Spec`` (its YAML body, ``extra="forbid"``), a
``from_spec`` constructor, ``check`` (static validation, before anything runs),
``execute`` (one run) and ``execute_batch`` (one call for a batch of runs, so that a
skill predicts once per group instead of once per text). Kinds register themselves in
:data:`step_kinds` under the key used in YAML (``skill``, ``route``, ...), so new kinds
plug in without touching the engine; a kind without its own ``execute_batch`` runs
``execute`` on each text of the batch.
"""

from __future__ import annotations

import difflib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, WithJsonSchema

from slmstack.errors import ConfigError
from slmstack.registry import Registry
from slmstack.types import Prediction
from slmstack.workflows.steprun import name_failure, share_latency, timed_execute
from slmstack.workflows.trace import Decision, StepTrace

if TYPE_CHECKING:
    from slmstack.backends.base import Backend
    from slmstack.workflows.packet import Packet


@runtime_checkable
class SkillLike(Protocol):
    """What a workflow needs from a skill: batched ``predict``."""

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text."""
        ...


# Fields of a Prediction that every step output has, whatever the skill.
ALWAYS = frozenset({"confidence", "abstained"})


class SpecError(ConfigError):
    """A step's YAML is wrong at ``path`` (a key below the step): the file's line of it."""

    def __init__(self, path: str, detail: str):
        super().__init__(f"{path}: {detail}")
        self.path, self.detail = path, detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.detail))


def skill_outputs(skill: object) -> frozenset[str] | None:
    """The Prediction fields ``skill`` fills (its class's ``produces``), or ``None``."""
    declared = getattr(skill, "produces", None)
    if isinstance(declared, frozenset | set | tuple | list) and declared:
        return frozenset(declared) | ALWAYS
    return None


def skill_labels(skill: object) -> tuple[str, ...] | None:
    """The labels a classifier can emit, when it says so (``classes_``)."""
    classes = getattr(skill, "classes_", None)
    if isinstance(classes, list | tuple) and all(isinstance(c, str) for c in classes):
        return tuple(classes)
    return None


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` when a close match exists, else the known names."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(sorted(known)) or 'none'})"


@dataclass(frozen=True)
class Shape:
    """What a step's output is, as far as static checks can tell.

    Attributes:
        fields: the Prediction fields it fills; ``None`` when unknown (not checked).
        ends: the step always ends the run (an escalation), so nothing after it runs.
        labels: the labels it can emit, when its skill says so (``classes_``).
    """

    fields: frozenset[str] | None
    ends: bool = False
    labels: tuple[str, ...] | None = None


@dataclass
class CheckEnv:
    """Validation state: what exists, which step ids are defined so far, the errors."""

    skills: Mapping[str, SkillLike]
    backends: Mapping[str, Backend]
    blocks: Mapping[str, Sequence[Step]]
    defined: dict[str, Shape] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    block_stack: tuple[str, ...] = ()
    # id → (the step that defined it, its path): a second step may not replace an output.
    owners: dict[str, tuple[Step, str]] = field(default_factory=dict)
    # The blocks some step uses, shared by every fork.
    used_blocks: set[str] = field(default_factory=set)
    # id → path of the first step to set it, on any branch (shared by every fork).
    seen: dict[str, str] = field(default_factory=dict)

    def error(self, path: str, message: str) -> None:
        """Record an error at ``path`` (kept, so that all errors are reported at once)."""
        self.errors.append((path, message))

    def fork(self) -> CheckEnv:
        """A copy for one branch: same errors list, own defined ids."""
        return CheckEnv(
            self.skills,
            self.backends,
            self.blocks,
            dict(self.defined),
            self.errors,
            self.block_stack,
            dict(self.owners),
            self.used_blocks,
            self.seen,
        )

    def adopt(self, other: CheckEnv) -> None:
        """Take every id ``other`` (a fork that surely ran) defines."""
        self.defined.update(other.defined)
        self.owners.update(other.owners)

    def join(self, branches: Sequence[tuple[CheckEnv, Shape]]) -> None:
        """After branches: an id is defined if every branch that goes on defines it."""
        going_on = [env for env, shape in branches if not shape.ends]
        if not going_on:
            return
        common = set(going_on[0].defined)
        for env in going_on[1:]:
            common &= set(env.defined)
        for key in common:
            shapes = [env.defined[key] for env in going_on]
            self.defined[key] = meet(shapes)
            if key in going_on[0].owners:
                self.owners[key] = going_on[0].owners[key]

    def no_id(self, step_id: str) -> str:
        """Why ``step_id`` cannot be read here (it is not in ``defined``), and the fix."""
        where = self.seen.get(step_id)
        if where is None:
            return f"no earlier step has id {step_id!r}{did_you_mean(step_id, list(self.defined))}"
        return (
            f"id {step_id!r} may not be set here: the step at {where} sets it, but it runs on "
            "some paths only (a route branch, a cascade tier after the first, another parallel "
            "branch). Read it inside that branch, or set the id on every path to here"
        )

    def check_skill(self, name: str, path: str) -> SkillLike | None:
        """The skill called ``name``, or an error at ``path``."""
        skill = self.skills.get(name)
        if skill is None:
            self.error(path, f"unknown skill {name!r}{did_you_mean(name, list(self.skills))}")
        return skill


def meet(shapes: Sequence[Shape]) -> Shape:
    """The shape every one of ``shapes`` guarantees (ending shapes impose nothing)."""
    live = [s for s in shapes if not s.ends]
    if not live:
        return Shape(None, ends=True)
    if len(live) == 1:
        return live[0]
    if any(s.fields is None for s in live):
        return Shape(None)
    fields = live[0].fields or frozenset()
    for s in live[1:]:
        fields &= s.fields or frozenset()
    return Shape(fields)


@dataclass
class HandOff:
    """An escalation requested by a step; the engine stores it once the run is over.

    ``fill`` reads the packet's fields (intent, sentiment, entities, summary) from step
    outputs; the engine calls it again on the run's final outputs, so a hand-off inside a
    ``parallel`` branch also carries what the other branches found.
    """

    to: str
    reason: str
    why: str
    packet: Packet | None = None
    fill: Callable[[Mapping[str, Prediction]], dict[str, Any]] | None = None


@dataclass
class Runtime:
    """What steps can use while running: skills, backends, blocks.

    The inbox is not here: an escalation step only prepares a packet (``HandOff``), and
    the engine files it once the run is over.
    """

    workflow: str
    skills: Mapping[str, SkillLike]
    backends: Mapping[str, Backend]
    blocks: Mapping[str, Sequence[Step]]


@dataclass
class RunContext:
    """The state of one run, shared by its steps.

    ``outputs`` holds each named step's output. ``rejection`` is the last decision that
    turned an answer down (a cascade tier below threshold, an abstention) and ``decision``
    the last decision of any kind; an escalation reports them as its *why*. ``hand_off``
    is set by an escalation and ends the run.
    """

    input: str
    runtime: Runtime
    outputs: dict[str, Prediction] = field(default_factory=dict)
    rejection: Decision | None = None
    decision: Decision | None = None
    hand_off: HandOff | None = None

    def fork(self) -> RunContext:
        """A context for one parallel branch: reads everything so far, writes its own."""
        return RunContext(
            self.input, self.runtime, dict(self.outputs), self.rejection, self.decision
        )


class Step(ABC):
    """One node of a workflow graph.

    Subclasses set ``kind`` (the YAML key) and ``Spec``, and implement ``from_spec``,
    ``check`` and ``execute``. ``id`` names the step's output for later steps.
    """

    kind: ClassVar[str]
    Spec: ClassVar[type[BaseModel]]
    # The Spec field a bare YAML value fills: `skill: intent` means `skill: {use: intent}`.
    shorthand: ClassVar[str | None] = None
    id: str | None = None
    # How the step was written in YAML, so that paths in errors and traces match the file:
    # "full" (`route: {...}`), "short" (`skill: intent`) or "bare" (a string or a list).
    yaml_form: str = "full"
    # Whether the step's children run at the same time (parallel branches): then a text's
    # latency in a batch is the longest of its children's, not their sum.
    concurrent: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def from_spec(cls, spec: Any, build: Builder, at: At) -> Step:
        """Build the step from its validated ``Spec``; ``build`` turns child specs into steps."""

    @abstractmethod
    def check(self, env: CheckEnv, path: str) -> Shape:
        """Validate against ``env`` (record errors there) and return the output's shape."""

    @abstractmethod
    def execute(self, ctx: RunContext, path: str) -> StepTrace:
        """Run once; return a trace whose ``output`` is the step's output."""

    def execute_batch(self, ctxs: Sequence[RunContext], path: str) -> list[StepTrace]:
        """Run once per context, as ``execute`` would, and return one trace each, in order.

        Built-in kinds override this to call each skill once for the whole batch; this
        fallback (for plug-in kinds and escalations) runs ``execute`` on each context in
        turn, and times each: a text's trace keeps its own call's time (an LLM answer
        priced by machine time) rather than an equal share of the batch's.
        """
        return [timed_execute(self, ctx, path) for ctx in ctxs]

    def children(self) -> list[Step]:
        """The steps this one holds (branches, tiers, sub-steps), found in its attributes."""
        found: list[Step] = []
        for value in vars(self).values():
            items = list(value.values()) if isinstance(value, dict) else value
            for item in items if isinstance(items, list | tuple) else [items]:
                if isinstance(item, Step):
                    found.append(item)
        return found

    def close(self) -> None:
        """Release what the step holds (a thread pool), and what its children hold."""
        for child in self.children():
            child.close()

    @property
    def name(self) -> str:
        """How the step is shown in traces."""
        return self.id or self.kind

    def at(self, path: str, field: str) -> str:
        """The path of ``field`` of this step at ``path``, as written in the YAML."""
        return field_path(path, self.kind, field, self.yaml_form, self.shorthand)

    def run(self, ctx: RunContext, path: str) -> StepTrace:
        """Execute, time it, and publish the output under ``id``."""
        trace = timed_execute(self, ctx, path)
        if self.id is not None and trace.output is not None:
            ctx.outputs[self.id] = trace.output
        return trace

    def run_batch(self, ctxs: Sequence[RunContext], path: str) -> list[StepTrace]:
        """Execute on a batch, share out its time, and publish each output under ``id``.

        A batch has one wall time, so each trace gets a share of it: a step without
        children (a skill) gets an equal share, on top of the time its ``execute_batch``
        measured for that text alone, if any (a call made per text); a step with children
        gets their latencies (summed, or the longest when they run at the same time, see
        ``concurrent``) plus an equal share of its own overhead. Each step's latencies
        over the batch thus add up to its wall time, and each text's trace adds up as in
        ``run``.
        """
        if not ctxs:
            return []
        start = time.perf_counter()
        try:
            traces = self.execute_batch(ctxs, path)
        except Exception as exc:
            name_failure(exc, self, path)
            raise
        if len(traces) != len(ctxs):
            raise ConfigError(
                f"step {self.name!r} ({type(self).__name__}) returned {len(traces)} traces "
                f"for {len(ctxs)} texts; its execute_batch must return one per context"
            )
        share_latency(traces, (time.perf_counter() - start) * 1000, concurrent=self.concurrent)
        for ctx, trace in zip(ctxs, traces, strict=True):
            if self.id is not None and trace.output is not None:
                ctx.outputs[self.id] = trace.output
        return traces

    def define(self, env: CheckEnv, shape: Shape, path: str) -> Shape:
        """Record this step's id as defined with ``shape`` (used at the end of ``check``).

        An id an earlier step already defined is an error, unless that step is this one
        (a block used twice) or one this step holds (a cascade named as its first tier).
        """
        if self.id is not None:
            held = env.owners.get(self.id)
            if held is not None and held[0] is not self and not self.holds(held[0]):
                env.error(
                    path,
                    f"id {self.id!r} is already the output of the step at {held[1]}; this "
                    "step would replace it, so later steps could no longer read the first. "
                    "Give one of them another `id:`",
                )
            env.defined[self.id] = shape
            env.owners[self.id] = (self, path)
            env.seen.setdefault(self.id, path)
        return shape

    def holds(self, step: Step) -> bool:
        """Whether ``step`` is one of this step's children, at any depth."""
        return any(child is step or child.holds(step) for child in self.children())


Builder = Callable[[Any, str], Step]
"""Turns a raw child spec (mapping or shorthand) at a path into a Step."""

At = Callable[[str], str]
"""Gives the path of a field of the step being built (see :func:`field_path`)."""


def field_path(path: str, kind: str, field: str, form: str, shorthand: str | None) -> str:
    """``steps[2].route.branches`` for a full form; the shorthand field is the kind's own path."""
    if form == "bare":
        return path
    if form == "short" and field == shorthand:
        return f"{path}.{kind}"
    return f"{path}.{kind}.{field}"


class StepSpec(BaseModel):
    """Base of every step kind's YAML body: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# pydantic refuses a $ref to a definition it does not know, so the field is marked, and
# slmstack.workflows.schema puts the reference to its `step` definition in its place.
STEP_MARK = {"$comment": "slmstack: a step"}

StepField = Annotated[Any, WithJsonSchema(STEP_MARK)]
"""A child step inside a Spec. Any YAML value passes here: the loader builds and checks
each child itself, so that its errors carry the child's own path and line. The JSON
Schema (``slmstack schema workflow``) still describes it as a step."""


step_kinds: Registry[type[Step]] = Registry("step kind")
"""Step kinds by their YAML key."""
