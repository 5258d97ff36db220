"""What an evaluation needs from a skill: its registered name and batched ``predict``.

Each skill class owns its evaluation (``Skill.evaluate``), which calls one of the
functions in this package; they depend on this protocol, not on the skill classes, so
the layers point one way (skills → evaluation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from slmstack.types import Prediction


@runtime_checkable
class Predictor(Protocol):
    """Anything with ``predict(list[str]) -> list[Prediction]``."""

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text."""
        ...
