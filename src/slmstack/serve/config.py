"""The server's configuration: one YAML file listing skills, workflows, keys and limits.

::

    skills:                          # name -> saved skill folder
      intent: models/intent
    workflows:                       # name -> workflow YAML
      support: ../examples/support-desk/workflow.yaml
    auth:                            # omitted: no auth (the server warns loudly at start)
      keys_env: SLMSTACK_API_KEYS    # "name:key,name2:key2"
      keys_file: keys.txt            # or one "name key" per line (never in the repository)
      public: [/livez, /readyz]      # routes served without a key, named explicitly
      rate_per_minute: 600           # per key; 429 + Retry-After above it
    limits: {max_body_bytes: 1048576, max_items: 256, deadline_s: 10.0, queue_size: 1024}
    batching: {max_batch: 64, max_wait_ms: 2.0, max_tokens: 16384}
    ledger: sqlite:///ledger.db      # spend per request, step and key; all workflows share it
    inbox: sqlite:///inbox.db        # default: each workflow's own inbox
    threads: {torch: 1, executor: 1}
    shutdown: {grace_s: 0.0, drain_timeout_s: 30.0}
    console: {reports: reports/, compare_to: gpt-4}  # /console: CLI reports listed, LLM line

The file is validated once, here, with ``extra="forbid"`` everywhere: every problem is
reported at once with its line (``serve.yaml:4: skills.intent: ...``), as workflow files
are. Relative paths, and relative ``sqlite:///`` URLs, are relative to the config file,
so a config means the same thing whatever folder the server starts in.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from slmstack.data.utf8 import read_utf8
from slmstack.data.yaml_lines import line_map, yaml_problem
from slmstack.errors import ConfigError
from slmstack.serve.ray_config import RayConfig
from slmstack.workflows.base import did_you_mean
from slmstack.workflows.engine import locate

# Names appear in URLs (/v1/skills/{name}/predict) and as OpenAI model ids.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _base(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base", "."))


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """A path relative to the config file's folder (the validation context's ``base``)."""
    return path if path.is_absolute() else (_base(info) / path).resolve()


def _name(value: str) -> str:
    if not NAME.match(value):
        raise ValueError(
            f"{value!r} cannot be a name: use letters, digits and _ . : - (it goes in URLs "
            "and is the `model` of OpenAI requests)"
        )
    return value


def _skill_folder(value: Path, info: ValidationInfo) -> Path:
    path = _resolve(value, info)
    if not (path / "config.json").is_file():
        what = "does not exist" if not path.exists() else "is not a saved skill folder"
        raise ValueError(f"{path} {what}; train and save the skill there, or fix the path")
    return path


def _workflow_file(value: Path, info: ValidationInfo) -> Path:
    path = _resolve(value, info)
    if not path.is_file():
        raise ValueError(f"{path} does not exist; fix the path (relative to this file)")
    return path


def _file(value: Path, info: ValidationInfo) -> Path:
    return _resolve(value, info)


def _database_url(value: str, info: ValidationInfo) -> str:
    if "://" not in value:
        raise ValueError(f"{value!r} is not a database URL; use sqlite:///PATH or postgresql+...")
    if value.startswith("sqlite:///") and value != "sqlite:///:memory:":
        file = Path(value.removeprefix("sqlite:///"))
        if not file.is_absolute():
            return f"sqlite:///{(_base(info) / file).resolve()}"
    return value


Name = Annotated[str, AfterValidator(_name)]
SkillFolder = Annotated[Path, AfterValidator(_skill_folder)]
WorkflowFile = Annotated[Path, AfterValidator(_workflow_file)]
File = Annotated[Path, AfterValidator(_file)]
DatabaseUrl = Annotated[str, AfterValidator(_database_url)]


class AuthConfig(_Section):
    """API keys (see :mod:`slmstack.serve.auth`): from an environment variable and/or a file."""

    keys_env: str | None = None
    keys_file: File | None = None
    # Routes served without a key. Nothing is public unless listed here: an orchestrator's
    # probes need `/livez` and `/readyz` listed.
    public: tuple[str, ...] = ()
    rate_per_minute: int | None = Field(default=None, ge=1)  # per key; None: no rate limit
    # Where --workers N share the limits (see serve/rates.py); default: the ledger's database.
    rate_store: DatabaseUrl | None = None
    # Keys that may claim or resolve inbox packets under another name, or with `force`
    # (a helpdesk tool acting for its agents, a supervisor). Any other key acts as itself.
    inbox_act_for_others: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _some_keys(self) -> AuthConfig:
        if self.keys_env is None and self.keys_file is None:
            raise ValueError(
                "auth needs `keys_env:` (an environment variable) or `keys_file:` (a file); "
                "without keys every route would be locked"
            )
        return self


class LimitsConfig(_Section):
    """What one request may ask for, and how long it may wait."""

    max_body_bytes: int = Field(default=1_048_576, ge=1)  # 1 MiB: thousands of tickets
    max_items: int = Field(default=256, ge=1)  # texts per request; more is a 422
    deadline_s: float = Field(default=10.0, gt=0)  # not answered by then: a 504
    queue_size: int = Field(default=1024, ge=1)  # texts waiting per target; more is a 429


class BatchingConfig(_Section):
    """How concurrent requests to one skill or workflow are gathered into one call."""

    max_batch: int = Field(default=64, ge=1)  # a small encoder's 64 cost ~ a few single calls
    max_wait_ms: float = Field(default=2.0, ge=0)  # the most a lone request pays for batching
    max_tokens: int = Field(default=16_384, ge=1)  # bounds a batch's padded size (4 chars/token)


class ThreadsConfig(_Section):
    """Model threads.

    Unset, the executor runs one batch at a time and torch gets the process's share of
    the cores (cores / workers), so that batches and torch never oversubscribe them.
    """

    torch: int | None = Field(default=None, ge=1)
    executor: int | None = Field(default=None, ge=1)


class ShutdownConfig(_Section):
    """What SIGTERM does.

    Readiness turns false at once; ``grace_s`` later the server stops accepting
    connections (time for a load balancer to notice), and requests in flight get
    ``drain_timeout_s`` to finish before they are cut.
    """

    grace_s: float = Field(default=0.0, ge=0)
    drain_timeout_s: float = Field(default=30.0, gt=0)


class ConsoleConfig(_Section):
    """The browser console at ``/console`` (see :mod:`slmstack.serve.console`)."""

    # A folder of reports the CLI wrote (`slmstack eval`, `slmstack cost report --html`,
    # `slmstack cost compare --html`); the console lists its .html, .json and .md files.
    reports: File | None = None
    compare_to: str = "gpt-4"  # the LLM of the reports' "all to the LLM" line


class ServeConfig(_Section):
    """The validated config of ``slmstack serve`` (see the module docstring)."""

    skills: dict[Name, SkillFolder] = Field(default_factory=dict)
    workflows: dict[Name, WorkflowFile] = Field(default_factory=dict)
    auth: AuthConfig | None = None
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    ledger: DatabaseUrl | None = None  # overrides the workflows' own `ledger:`
    inbox: DatabaseUrl | None = None  # overrides the workflows' own `inbox:`
    # Prices of direct skill calls: a price table over the packaged one, and the machine.
    prices: File | None = None
    machine: str | None = None
    threads: ThreadsConfig = Field(default_factory=ThreadsConfig)
    shutdown: ShutdownConfig = Field(default_factory=ShutdownConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    ray: RayConfig = Field(default_factory=RayConfig)  # read by `--engine ray` only

    @model_validator(mode="after")
    def _names_once(self) -> ServeConfig:
        both = sorted(set(self.skills) & set(self.workflows))
        if both:
            raise ValueError(
                f"{', '.join(map(repr, both))} is both a skill and a workflow; a name is "
                "the `model` of a request, so it must be one of them"
            )
        if not self.skills and not self.workflows:
            raise ValueError("nothing to serve: list at least one skill or workflow")
        return self

    @property
    def public_routes(self) -> frozenset[str]:
        """Route templates served without a key (see ``auth.public``)."""
        return frozenset(() if self.auth is None else self.auth.public)


def load_config(path: str | Path, *, ray_imports: bool = False) -> ServeConfig:
    """Read and validate a serve config file; every problem is reported, with its line.

    ``ray_imports`` (the Ray engine) imports the modules of ``ray.imports`` before the
    workflows are checked, as every replica does before it loads them, so that a
    workflow may build a skill of a kind one of them registers.

    Raises:
        ConfigError: the file is missing, is not YAML, or fails validation.

    Example:
        >>> config = load_config("serve.yaml")  # doctest: +SKIP
        >>> sorted(config.skills)  # doctest: +SKIP
        ['intent']
    """
    source = Path(path)
    if not source.is_file():
        what = "is a folder" if source.is_dir() else "does not exist"
        raise ConfigError(f"serve config {source} {what}; pass the YAML file to serve")
    text = read_utf8(source)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_problem(source, exc)) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping (skills:, workflows:, ...)")
    lines = line_map(node, source) if node is not None else {}
    base = source.resolve().parent
    try:
        config = ServeConfig.model_validate(raw, context={"base": base})
    except ValidationError as exc:
        problems = [(locate(source, lines, p), p, m) for p, m in _problems(exc)]
    else:
        from slmstack.workflows.loader import check_workflow

        for module in config.ray.imports if ray_imports else ():
            # Not importable here (shipped by a runtime_env): the replicas report it, and
            # the check below any kind it alone would have registered.
            with contextlib.suppress(ImportError):
                importlib.import_module(module)
        for workflow in config.workflows.values():  # each file's graph, before any model loads
            check_workflow(workflow)
        return config
    problems.sort(key=lambda problem: _line_of(problem[0]))  # in file order
    rendered = [f"{where}{p or 'top level'}: {message}" for where, p, message in problems]
    if len(rendered) == 1:
        raise ConfigError(rendered[0])
    raise ConfigError(
        f"serve config {source} has {len(rendered)} errors:\n  " + "\n  ".join(rendered)
    )


def _line_of(where: str) -> int:
    """The line number in ``file.yaml:12: `` (0 when there is none)."""
    number = where.rstrip(": ").rpartition(":")[2]
    return int(number) if number.isdigit() else 0


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """``(path, message)`` pairs; an unknown key gets a did-you-mean over its section."""
    sections: dict[str, type[BaseModel]] = {
        "auth": AuthConfig, "limits": LimitsConfig, "batching": BatchingConfig,
        "threads": ThreadsConfig, "shutdown": ShutdownConfig, "console": ConsoleConfig,
        "ray": RayConfig,
    }  # fmt: skip
    out = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p != "[key]")
        path = ""
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        if err["type"] == "extra_forbidden":
            model = sections.get(str(loc[0]), ServeConfig) if len(loc) > 1 else ServeConfig
            model = _inner(model, loc[1:-1])  # a section in a section (ray.ingress)
            key = str(loc[-1])
            message = f"unknown key {key!r}{did_you_mean(key, list(model.model_fields))}"
        elif err["type"] == "missing":
            message = f"missing required key {loc[-1]!r}"
            path = path.rpartition(".")[0]
        elif err["type"] == "value_error":
            message = str(err["msg"]).removeprefix("Value error, ")
        else:
            message = f"{err['msg']} (got {err.get('input')!r})"
        out.append((path, message))
    return out


def _inner(model: type[BaseModel], parts: tuple[int | str, ...]) -> type[BaseModel]:
    """The section model reached from ``model`` through the keys ``parts``."""
    for part in parts:
        field = model.model_fields.get(str(part))
        kind = None if field is None else field.annotation
        if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
            break
        model = kind
    return model


__all__ = [
    "AuthConfig",
    "BatchingConfig",
    "ConsoleConfig",
    "LimitsConfig",
    "ServeConfig",
    "ShutdownConfig",
    "ThreadsConfig",
    "load_config",
]
