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
_TRAINERS: dict[str, Reader | None] = {}


def register_trainer(kind: str, reader: Reader | None) -> None:
    """Let workflow specs train skills of ``kind``.

    ``reader(path)`` turns the ``train:`` file (or folder) into ``fit``'s argument; a
    ``None`` reader means the kind is fitted on nothing (``fit([])``, for example a
    summariser that only captures its configuration), so its spec needs no ``train:``.
    """
    _TRAINERS[kind] = reader


def _read_examples(path: Path) -> Any:
    from slmstack.data.readers import read_examples

    return read_examples(path)


def _read_kb(path: Path) -> Any:
    from slmstack.retrieval.knowledge import read_kb

    return read_kb(path)


def _read_documents(path: Path) -> Any:
    from slmstack.retrieval.chunking import read_documents

    return read_documents(path)


def _read_tagged(path: Path) -> Any:
    from slmstack.data.tagging import read_tagged

    return read_tagged(path)


def _read_field_examples(path: Path) -> Any:
    from slmstack.data.documents import read_field_examples

    return read_field_examples(path)


register_trainer("slmstack.TextClassifier.v1", _read_examples)
register_trainer("slmstack.FieldExtractor.v1", _read_field_examples)
register_trainer("slmstack.LanguageDetector.v1", _read_examples)
register_trainer("slmstack.FAQAnswerer.v1", _read_kb)
register_trainer("slmstack.Troubleshooter.v1", _read_documents)
register_trainer("slmstack.EntityTagger.v1", _read_tagged)
register_trainer("slmstack.SpacyTagger.v1", _read_tagged)
register_trainer("slmstack.Summarizer.v1", None)


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
        if spec.kind in _TRAINERS and _TRAINERS[spec.kind] is None:
            skill = skill.fit([])
        if not isinstance(skill, SkillLike):
            raise ConfigError(f"skills.{name}: {spec.kind} has no predict(texts) method")
        return skill
    reader = _TRAINERS.get(spec.kind)
    if reader is None:
        trainable = sorted(k for k, r in _TRAINERS.items() if r is not None)
        raise ConfigError(
            f"skills.{name}: {spec.kind} cannot be trained from a file in a workflow "
            f"(kinds that can: {', '.join(trainable)}); train it with `slmstack train` and "
            "give its folder as `path:`"
        )
    data = (base / spec.train).resolve()
    if not data.exists():
        raise ConfigError(f"skills.{name}.train: {data} does not exist")
    digest = hashlib.sha256(
        json.dumps([spec.kind, spec.params, _data_digest(data)], sort_keys=True).encode()
    ).hexdigest()[:16]
    folder = cache / f"{name}-{digest}"
    if (folder / "config.json").is_file():
        return _load_folder(folder, name)
    skill = cls(**spec.params).fit(reader(data))
    skill.save(folder)
    return skill  # type: ignore[no-any-return]


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
