"""The skill contract: ``fit`` → ``predict`` → ``save`` / ``load``.

Every skill follows the estimator contract: hyper-parameters go in a keyword-only
``__init__`` with no logic, ``fit`` validates and returns ``self``, learned state
ends in ``_``, and ``load(save(skill))`` predicts exactly the same.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from slmstack import registry
from slmstack.errors import ArtifactError, ConfigError, DataError
from slmstack.artifacts import read_config
from slmstack.types import Prediction


class Skill(ABC):
    """A small model with one job.

    Subclasses register themselves with ``@registry.skills.register("slmstack.Name.v1")``
    and set ``skill_name`` to the same string, which ``save`` writes to ``config.json``.
    """

    skill_name: ClassVar[str]

    @abstractmethod
    def fit(self, examples: Sequence[Any]) -> Self:
        """Train on ``examples`` and return ``self``."""

    @abstractmethod
    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One :class:`Prediction` per input text, in order."""

    @abstractmethod
    def save(self, path: str | Path) -> Path:
        """Write the skill to a folder and return it."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> Self:
        """Rebuild a skill saved with :meth:`save`."""


def check_texts(texts: Sequence[str]) -> None:
    """Refuse a bare string (a common slip) and non-string items, with the fix."""
    if isinstance(texts, str):
        raise ConfigError(
            "predict() takes a list of texts, got a single string. Wrap it: predict([text])."
        )
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"text #{i} is {type(t).__name__}, expected str")


def load(path: str | Path) -> Skill:
    """Load any saved skill folder, whatever its kind.

    Example:
        >>> skill = load("runs/intent")  # doctest: +SKIP
        >>> skill.predict(["where is my card?"])[0].label  # doctest: +SKIP
        'card_arrival'
    """
    config = read_config(Path(path))
    name = config.get("skill")
    if not isinstance(name, str):
        raise ArtifactError(f"{path}/config.json has no 'skill' entry; is this a skill folder?")
    cls = registry.skills.get(name)
    skill = cls.load(path)  # type: ignore[attr-defined]
    if not isinstance(skill, Skill):
        raise ArtifactError(f"{name} did not load a Skill from {path}")
    return skill
