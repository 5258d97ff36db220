"""Load a workflow from YAML, keeping the line of every node for error messages.

A workflow file::

    name: support-desk
    inbox: sqlite:///inbox.db            # optional; see Workflow
    ledger: sqlite:///ledger.db          # optional: every run and step, with its cost
    prices: prices.yaml                  # optional: your prices over the packaged table
    machine: cpu-4vcpu                   # optional: the machine local steps are priced on
    backends:                            # LLMs an escalation may call, never implicit
      big: {model: qwen2.5-0.5b, runtime: llama_cpp}
    skills:
      intent: models/intent              # a saved skill folder, relative to this file
      lang: {kind: slmstack.LanguageDetector.v1, train: data/languages.csv}
    blocks:
      hand_off: [{escalate: {reason: needs a person}}]
    steps:
      - cascade: {threshold: 0.5, tiers: [{skill: intent}, {block: hand_off}]}
      - route: {on: intent, branches: {faq: faq}, default: {block: hand_off}}

A step is a mapping with one key, its kind (``skill``, ``sequence``, ``parallel``,
``route``, ``cascade``, ``escalate``, ``template``, ``merge``, ``block``), whose value is
the kind's body; a bare string is a skill step and a bare list a sequence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, field_validator

import slmstack.workflows.steps  # noqa: F401  (registers the built-in step kinds)
from slmstack.data.utf8 import read_utf8
from slmstack.data.yaml_lines import line_map, yaml_problem
from slmstack.errors import ConfigError, WorkflowError
from slmstack.workflows.base import (
    SkillLike,
    SpecError,
    Step,
    StepField,
    did_you_mean,
    field_path,
    step_kinds,
)
from slmstack.workflows.engine import Workflow, graph_problems, locate
from slmstack.workflows.metering import spec_prices
from slmstack.workflows.skillspec import SkillSpec, StandIn, check_skill_spec, resolve_skills
from slmstack.workflows.steps.sequence import SequenceStep
from slmstack.workflows.steps.skill import SkillStep


class BackendSpec(BaseModel):
    """An LLM an ``escalate: {to: NAME}`` step may call (see ``slmstack.backends``)."""

    model_config = ConfigDict(extra="forbid")
    model: str  # alias, GGUF file, folder, Hugging Face id, or a remote model name
    runtime: str = "llama_cpp"  # "llama_cpp", "transformers" or "openai" (needs base_url)
    options: dict[str, Any] = Field(default_factory=dict)


# A `skills:` entry: a folder, or a spec that the loader validates itself (for its path).
# Marked like StepField; slmstack.workflows.schema puts the real schema in its place.
SKILL_MARK = {"$comment": "slmstack: a skill entry"}
SkillEntry = Annotated[Any, WithJsonSchema(SKILL_MARK)]


class WorkflowSpec(BaseModel):
    """The top level of a workflow file."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None  # defaults to the file name
    description: str = ""
    inbox: str | None = None  # database URL; a relative sqlite path is relative to the file
    # Cost ledger URL (relative sqlite paths as for inbox); none by default, nothing recorded.
    ledger: str | None = None
    # A price table file (relative to this file) or an inline one, over the packaged table.
    prices: str | dict[str, Any] | None = None
    machine: str | None = None  # priced machine of local steps; the table's default_machine
    skills: dict[str, SkillEntry] = Field(default_factory=dict)
    backends: dict[str, BackendSpec] = Field(default_factory=dict)
    blocks: dict[str, list[StepField]] = Field(default_factory=dict)
    steps: list[StepField] = Field(min_length=1)

    @field_validator("inbox", "ledger")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        """A URL the database layer can read, checked now rather than at the first write."""
        if value is not None and not re.match(r"^[a-z][a-z0-9+]*://", value):
            raise ValueError(
                f"{value!r} is not a database URL; use sqlite:///PATH (relative to this "
                "file) or postgresql+psycopg://USER@HOST/DB"
            )
        return value


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false, so `on:` stays the key "on", not True."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _loc(base: str, loc: tuple[int | str, ...]) -> str:
    path = base
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def pydantic_problems(
    exc: ValidationError, base: str, model: type[BaseModel]
) -> list[tuple[str, str]]:
    """Readable ``(path, message)`` pairs for a pydantic error, with did-you-mean for keys."""
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            allowed = list(model.model_fields)
            message = f"unknown key {loc[-1]!r}{did_you_mean(str(loc[-1]), allowed)}"
        elif err["type"] == "missing":
            message = f"missing required key {loc[-1]!r}"
            loc = loc[:-1]
        else:
            message = f"{err['msg']} (got {err.get('input')!r})"
        problems.append((_loc(base, loc), message))
    return problems


class _Builder:
    """Turns raw YAML step specs into Step objects, collecting every error."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def __call__(self, raw: Any, path: str) -> Step:
        try:
            return self._build(raw, path)
        except _Invalid:
            # A placeholder keeps building the rest, so all errors are reported at once.
            return _Broken()

    def _build(self, raw: Any, path: str) -> Step:
        if isinstance(raw, str):
            step: Step = SkillStep(raw)
            step.yaml_form = "bare"
            return step
        if isinstance(raw, list):
            if not raw:
                self._fail(path, "an empty list is not a step")
            step = SequenceStep([self(item, f"{path}[{i}]") for i, item in enumerate(raw)])
            step.yaml_form = "bare"
            return step
        if not isinstance(raw, dict) or len(raw) != 1:
            kinds = step_kinds.names()
            got = f"keys {sorted(raw)}" if isinstance(raw, dict) else type(raw).__name__
            self._fail(
                path, f"a step is a mapping with one key, its kind ({', '.join(kinds)}); got {got}"
            )
        kind, body = next(iter(raw.items()))
        if kind not in step_kinds.names():
            self._fail(path, f"unknown step kind {kind!r}{did_you_mean(kind, step_kinds.names())}")
        cls = step_kinds.get(kind)
        form = "full"
        if not isinstance(body, dict):
            if cls.shorthand is None:
                self._fail(f"{path}.{kind}", f"the body of a {kind} step must be a mapping")
            body, form = {cls.shorthand: body}, "short"
        try:
            spec = cls.Spec.model_validate(body)
        except ValidationError as exc:
            base = path if form == "bare" else f"{path}.{kind}"
            for where, message in pydantic_problems(exc, base, cls.Spec):
                if form == "short":
                    where = where.replace(f"{path}.{kind}.{cls.shorthand}", f"{path}.{kind}")
                self.problems.append((where, message))
            raise _Invalid from None

        def at(field: str) -> str:
            return field_path(path, kind, field, form, cls.shorthand)

        try:
            step = cls.from_spec(spec, self, at)
        except SpecError as exc:  # at a key below the step: its own line
            self._fail(exc.path, exc.detail)
        except ConfigError as exc:
            self._fail(path, str(exc))
        step.yaml_form = form
        return step

    def _fail(self, path: str, message: str) -> Any:
        self.problems.append((path, message))
        raise _Invalid


class _Invalid(Exception):
    """Internal: this step could not be built (the reason is in ``problems``)."""


class _Broken(Step):
    """Stands in for a step that failed to build; never runs (validation fails first)."""

    kind = "broken"

    @classmethod
    def from_spec(cls, spec: Any, build: Any, at: Any) -> Step:  # pragma: no cover
        raise NotImplementedError

    def check(self, env: Any, path: str) -> Any:
        from slmstack.workflows.base import Shape

        return Shape(None)

    def execute(self, ctx: Any, path: str) -> Any:  # pragma: no cover
        raise NotImplementedError


def load_workflow(
    path: str | Path,
    *,
    skills: Mapping[str, SkillLike] | None = None,
    backends: Mapping[str, Any] | None = None,
    inbox: Any = None,
    cache_dir: str | Path | None = None,
    ledger: Any = None,
) -> Workflow:
    """Load and validate a workflow file; nothing runs until ``Workflow.run``.

    Args:
        path: the YAML file.
        skills: skills to use instead of (or in addition to) those the file declares.
        backends: name → LLM backend for ``escalate: {to: NAME}`` steps, replacing those
            the file declares under ``backends:`` (which are loaded with
            :func:`slmstack.backends.load_backend`).
        inbox: an :class:`~slmstack.workflows.inbox.Inbox` or URL overriding ``inbox:``.
        cache_dir: where skills the file trains from data are saved and reused; by
            default ``.slmstack-cache`` next to the file.
        ledger: a :class:`~slmstack.costs.Ledger` or URL overriding ``ledger:``.

    Raises:
        WorkflowError: the file is invalid, for example a backend outside ``llama_cpp``
            and ``transformers`` calls a model with no price in the price table.

    Example:
        >>> wf = load_workflow("examples/support-desk/workflow.yaml")  # doctest: +SKIP
        >>> wf.run("I was charged twice and nobody answers!").status  # doctest: +SKIP
        'escalated'
    """
    source = Path(path)
    p = _prepare(source, skills, backends)
    spec, steps, blocks, skill_specs = p.spec, p.steps, p.blocks, p.skill_specs
    cache = Path(cache_dir) if cache_dir is not None else source.parent / ".slmstack-cache"
    try:
        resolved = resolve_skills(skill_specs, base=source.parent, cache=cache, given=skills)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    inbox_arg = inbox if inbox is not None else _inbox_url(spec.inbox, source.parent)
    llms = dict(backends or {})
    for key, backend in spec.backends.items():
        if key not in llms:
            from slmstack.backends.factory import load_backend

            llms[key] = load_backend(backend.model, runtime=backend.runtime, **backend.options)
    return Workflow(
        steps,
        skills=resolved,
        name=p.name,
        backends=llms,
        blocks=blocks,
        inbox=inbox_arg,
        source=source,
        lines=p.lines,
        ledger=ledger if ledger is not None else _inbox_url(spec.ledger, source.parent),
        prices=p.prices,
    )


def check_workflow(path: str | Path, *, skills: Mapping[str, SkillLike] | None = None) -> None:
    """Check a workflow file without training or loading anything; raise WorkflowError.

    Its schema, its skill specs and its graph are checked, each problem with its line.
    What only the loaded skills can tell (a route's labels against a classifier's classes,
    a saved folder that is missing) is checked by :func:`load_workflow`.
    """
    _prepare(Path(path), skills, None)


@dataclass(frozen=True)
class _Prepared:
    """A workflow file read and checked up to, not including, its skills and backends."""

    name: str
    lines: Mapping[str, int]
    spec: WorkflowSpec
    steps: list[Step]
    blocks: dict[str, list[Step]]
    skill_specs: dict[str, SkillSpec | str]
    prices: Any


def _prepare(
    source: Path, skills: Mapping[str, SkillLike] | None, backends: Mapping[str, Any] | None
) -> _Prepared:
    raw, node = _read(source)
    lines = line_map(node, source)
    name = str(raw.get("name") or source.stem)

    def fail(problems: list[tuple[str, str]]) -> WorkflowError:
        return WorkflowError(name, [(locate(source, lines, p), p, m) for p, m in problems])

    try:
        spec = WorkflowSpec.model_validate(raw)
    except ValidationError as exc:
        raise fail(pydantic_problems(exc, "", WorkflowSpec)) from None
    build = _Builder()
    blocks = {
        key: [build(s, f"blocks.{key}[{i}]") for i, s in enumerate(steps)]
        for key, steps in spec.blocks.items()
    }
    steps = [build(s, f"steps[{i}]") for i, s in enumerate(spec.steps)]
    skill_specs: dict[str, SkillSpec | str] = {}
    for key, value in spec.skills.items():
        if isinstance(value, str):
            skill_specs[key] = value
            continue
        try:
            skill_specs[key] = long_form = SkillSpec.model_validate(value)
        except ValidationError as exc:
            build.problems.extend(pydantic_problems(exc, f"skills.{key}", SkillSpec))
            continue
        build.problems.extend(check_skill_spec(key, long_form))
    prices, price_problems = spec_prices(spec, source.parent)
    build.problems.extend(price_problems)
    if build.problems:
        raise fail(build.problems)
    # The graph on stand-ins first: a wrong name fails now, not after minutes of training.
    standins = {**{k: StandIn(v, source.parent) for k, v in skill_specs.items()}, **(skills or {})}
    names = dict.fromkeys([*spec.backends, *(backends or {})])
    early = graph_problems(steps, standins, names, blocks)
    if early:
        raise fail(early)
    return _Prepared(name, lines, spec, steps, blocks, skill_specs, prices)


def _read(source: Path) -> tuple[dict[str, Any], yaml.Node]:
    """The parsed mapping of a workflow file and its YAML node tree (for line numbers)."""
    if not source.is_file():
        what = "is a folder, not a file" if source.is_dir() else "does not exist"
        raise ConfigError(f"workflow file {source} {what}")
    text = read_utf8(source)
    try:
        node = yaml.compose(text, Loader=_Loader)
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no Python objects
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_problem(source, exc)) from exc
    if not isinstance(raw, dict) or node is None:
        raise ConfigError(f"{source}: a workflow file is a mapping with at least `steps:`")
    return raw, node


def workflow_inbox_url(path: str | Path) -> str | None:
    """The ``inbox:`` URL of a workflow file, resolved as :func:`load_workflow` does.

    Reads only that entry: nothing is loaded or trained. ``None`` when the file has no
    ``inbox:`` (its workflow then uses :func:`slmstack.workflows.inbox.default_url`).

    Example:
        >>> workflow_inbox_url("examples/support-desk/workflow.yaml")  # doctest: +SKIP
        'sqlite:///examples/support-desk/.slmstack-cache/inbox.db'
    """
    source = Path(path)
    raw, _ = _read(source)
    url = raw.get("inbox")
    if url is not None and not isinstance(url, str):
        raise ConfigError(
            f"{source}: inbox: must be a database URL such as sqlite:///inbox.db; got {url!r}"
        )
    return _inbox_url(url, source.parent)


def _inbox_url(url: str | None, base: Path) -> str | None:
    """A relative SQLite path in the file is relative to the file, not the working folder."""
    if url is None or not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return url
    file = Path(url.removeprefix("sqlite:///"))
    return url if file.is_absolute() else f"sqlite:///{base / file}"
