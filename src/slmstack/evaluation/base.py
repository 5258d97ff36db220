"""Evaluation dispatch: each skill kind registers how it is evaluated on a data file.

An evaluator takes the loaded skill, the data path and the CLI options and returns a
JSON-serialisable report (a dict). ``slmstack eval`` prints it as tables or JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from slmstack.registry import Registry
from slmstack.skills.base import Skill

Evaluator = Callable[..., dict[str, Any]]
evaluators: Registry[Evaluator] = Registry("evaluator")


def evaluate_skill(skill: Skill, data: str | Path, **options: Any) -> dict[str, Any]:
    """Evaluate ``skill`` on the labelled file ``data`` with its registered evaluator."""
    evaluator = evaluators.get(skill.skill_name)
    return evaluator(skill, Path(data), **options)
