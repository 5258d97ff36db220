"""Skills named in a workflow file: saved folders, or small specs trained from a data file.

::

    skills:
      intent: models/intent                                  # a saved skill folder
      sentiment: {path: models/sentiment}                    # the same, long form
      lang: {kind: slmstack.LanguageDetector.v1, train: data/languages.csv}
      topic: {kind: slmstack.TextClassifier.v1, params: {strategy: head}, train: topics.csv}

A folder used by several names is loaded once. A spec with ``train`` is fitted on the
file read by its class's ``read_training_data``, saved in the cache folder under a hash
of (kind, params, data, artifact format), and loaded from there next time, so the
example stacks train once (processes that start together, as ``serve --workers N``,
wait for the first one's save rather than each training). A spec without ``train`` is
used as constructed (ready-made skills; a class with ``trains_on_nothing`` is fitted on
``[]``). Its ``params`` are checked against the class's signature when the file is
loaded, before anything trains.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slmstack import registry
from slmstack.artifacts import FORMAT_VERSION
from slmstack.errors import ConfigError
from slmstack.models.hashing import sha256_file
from slmstack.workflows.base import SkillLike, did_you_mean


class SkillSpec(BaseModel):
    """One entry of ``skills:`` in its long form."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str | None = None
    kind: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    train: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SkillSpec:
        if (self.path is None) == (self.kind is None):
            raise ValueError("give either `path:` (a saved skill folder) or `kind:` (to build one)")
        if self.path is not None and (self.params or self.train):
            raise ValueError("`params:` and `train:` go with `kind:`, not with `path:`")
        return self


PICKLE_REFUSED = (
    "a workflow file cannot allow pickled weights (the file may come from anyone); save the "
    "base model as safetensors (`model.save_pretrained(folder, safe_serialization=True)`) "
    "and name that folder as the base"
)


def check_skill_spec(name: str, spec: SkillSpec) -> list[tuple[str, str]]:
    """``(path, message)`` problems of a spec's kind and params, found before training."""
    if spec.kind is None:
        return []
    if spec.kind not in registry.skills.names():
        known = registry.skills.names()
        return [(f"skills.{name}.kind",
                 f"unknown skill kind {spec.kind!r}{did_you_mean(spec.kind, known)}")]  # fmt: skip
    cls = registry.skills.get(spec.kind)
    problems = []
    if "allow_pickle" in spec.params:
        problems.append((f"skills.{name}.params.allow_pickle", PICKLE_REFUSED))
    for key, value in spec.params.items():
        if key == "allow_pickle":
            continue
        try:
            cls.check_params({key: value})
        except ConfigError as exc:
            problems.append((f"skills.{name}.params.{key}", str(exc)))
    if spec.train is not None and cls.trains_on_nothing and not cls.also_trains_on_data:
        problems.append((f"skills.{name}.train", f"{spec.kind} is not trained from a file"))
    return problems


def _load_folder(folder: Path, name: str) -> SkillLike:
    from slmstack.skills.base import load

    if not folder.is_dir():
        raise ConfigError(
            f"skills.{name}: folder {folder} does not exist; train the skill and save it "
            "there, or fix the path (relative paths are relative to the workflow file)"
        )
    return load(folder)


def _build(name: str, spec: SkillSpec, base: Path, cache: Path) -> SkillLike:
    assert spec.kind is not None
    if spec.kind not in registry.skills.names():
        known = registry.skills.names()
        raise ConfigError(
            f"skills.{name}: unknown skill kind {spec.kind!r}{did_you_mean(spec.kind, known)}"
        )
    cls = registry.skills.get(spec.kind)
    if "allow_pickle" in spec.params:
        raise ConfigError(f"skills.{name}.params.allow_pickle: {PICKLE_REFUSED}")
    if spec.train is None:
        skill = cls(**spec.params)
        if getattr(cls, "trains_on_nothing", False):
            skill = skill.fit([])
        if not isinstance(skill, SkillLike):
            raise ConfigError(f"skills.{name}: {spec.kind} has no predict(texts) method")
        return skill
    data = (base / spec.train).resolve()
    if not data.exists():
        raise ConfigError(f"skills.{name}.train: {data} does not exist")
    digest = hashlib.sha256(
        json.dumps(
            [spec.kind, spec.params, _data_digest(data), FORMAT_VERSION, cls.state_version],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    folder = cache / f"{name}-{digest}"
    # Processes that start together (``serve --workers N``) train it once: the first holds
    # the lock while it trains and saves, the others wait and then load its folder.
    with _locked(cache / f".{name}-{digest}.lock"):
        if (folder / "config.json").is_file():
            return _load_folder(folder, name)
        skill = cls(**spec.params)
        skill.fit(skill.training_data(data))
        skill.save(folder)
    return skill  # type: ignore[no-any-return]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (``flock``, POSIX; no lock on Windows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when the file closes
        yield


def _data_digest(path: Path) -> str:
    """sha256 of a data file, or of every file under a data folder (names and contents)."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{f.relative_to(path)}\0{sha256_file(f)}\n".encode())
    return digest.hexdigest()


def resolve_skills(
    specs: Mapping[str, SkillSpec | str],
    *,
    base: Path,
    cache: Path,
    given: Mapping[str, SkillLike] | None = None,
) -> dict[str, SkillLike]:
    """Build every skill of a workflow file; ``given`` skills replace declared ones."""
    given = dict(given or {})
    loaded: dict[Path, SkillLike] = {}
    out: dict[str, SkillLike] = {}
    for name, spec in specs.items():
        if name in given:
            continue
        if isinstance(spec, str) or spec.path is not None:
            rel = spec if isinstance(spec, str) else spec.path
            assert rel is not None
            folder = (base / rel).resolve()
            if folder not in loaded:  # one folder, one model in memory
                loaded[folder] = _load_folder(folder, name)
            out[name] = loaded[folder]
        else:
            out[name] = _build(name, spec, base, cache)
    out.update(given)
    return out


class StandIn:
    """A declared skill before it is trained or loaded: what its class says it produces.

    The kind comes from the spec, or from a saved folder's ``config.json``; when it cannot
    be told (no such folder yet: the real load reports that), the outputs are unknown and
    left unchecked, as they are for a skill that declares none.
    """

    def __init__(self, spec: SkillSpec | str, base: Path):
        kind = spec.kind if isinstance(spec, SkillSpec) else None
        rel = spec if isinstance(spec, str) else spec.path
        if kind is None and rel is not None:
            try:
                kind = json.loads((base / rel / "config.json").read_text(encoding="utf-8"))["skill"]
            except (OSError, ValueError, KeyError, TypeError):
                kind = None
        cls = registry.skills.get(kind) if kind in registry.skills.names() else None
        self.produces = getattr(cls, "produces", None)
