"""Skills named in a workflow file: saved folders, or small specs trained from a data file.

::

    skills:
      intent: models/intent                                  # a saved skill folder
      sentiment: {path: models/sentiment}                    # the same, long form
      lang: {kind: slmstack.LanguageDetector.v1, train: data/languages.csv}
      topic: {kind: slmstack.TextClassifier.v1, params: {strategy: head}, train: topics.csv}

A folder used by several names is loaded once. A spec with ``train`` is fitted on the
file read by the reader registered for its kind, saved in the cache folder under a hash
of (kind, params, data), and loaded from there next time, so the example stacks train
once. A spec without ``train`` is used as constructed (ready-made skills).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

import slmstack.skills.language  # noqa: F401  (registers LanguageDetector)
from slmstack import registry
from slmstack.errors import ConfigError
from slmstack.models.hashing import sha256_file
from slmstack.workflows.base import SkillLike, did_you_mean

Reader = Callable[[Path], Any]
_TRAINERS: dict[str, Reader] = {}


def register_trainer(kind: str, reader: Reader) -> None:
    """Let workflow specs train skills of ``kind``: ``reader(path)`` gives ``fit``'s argument."""
    _TRAINERS[kind] = reader


def _read_examples(path: Path) -> Any:
    from slmstack.data.readers import read_examples

    return read_examples(path)


register_trainer("slmstack.TextClassifier.v1", _read_examples)
register_trainer("slmstack.LanguageDetector.v1", _read_examples)


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
    if spec.train is None:
        skill = cls(**spec.params)
        if not isinstance(skill, SkillLike):
            raise ConfigError(f"skills.{name}: {spec.kind} has no predict(texts) method")
        return skill
    reader = _TRAINERS.get(spec.kind)
    if reader is None:
        raise ConfigError(
            f"skills.{name}: {spec.kind} cannot be trained from a workflow file (trainable "
            f"kinds: {', '.join(sorted(_TRAINERS))}); train it with `slmstack train` and give "
            "its folder as `path:`"
        )
    data = (base / spec.train).resolve()
    if not data.is_file():
        raise ConfigError(f"skills.{name}.train: data file {data} does not exist")
    digest = hashlib.sha256(
        json.dumps([spec.kind, spec.params, sha256_file(data)], sort_keys=True).encode()
    ).hexdigest()[:16]
    folder = cache / f"{name}-{digest}"
    if (folder / "config.json").is_file():
        return _load_folder(folder, name)
    skill = cls(**spec.params).fit(reader(data))
    skill.save(folder)
    return skill  # type: ignore[no-any-return]


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
