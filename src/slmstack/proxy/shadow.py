"""Shadow mode: a task's calls also go to its student; the LLM still answers; both are compared.

The method: a :class:`ShadowTask` is a discovered task (its system prompt and the fixed
text around the variable part, from ``slmstack discover --json``) and the student skill
trained for it. The recorder's thread, after the client has its answer, matches each
recorded call against the shadowed tasks, cuts out the variable part, asks the student,
and scores agreement the way the task needs:

- classification: the labels are equal (compared as :func:`~slmstack.proxy.answers.label_of`
  forms: case, quotes and end punctuation aside): 1 or 0;
- extraction: the share of the LLM's JSON fields the student gives equal values (the
  call agrees when all do);
- generation: token F1 between the two texts (the call agrees at 0.5 or more).

Nothing reaches the client from the student: the shadow costs no latency on the request
path, only recorder time. Each comparison is one row of ``slmstack_shadow`` (in the
proxy's database), masked as the traffic is, which ``slmstack promote`` reads.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from slmstack.errors import ConfigError
from slmstack.proxy.answers import TaskKind, json_object, label_of

AGREE_F1 = 0.5  # token F1 at which two generated texts count as agreeing


@dataclass(frozen=True)
class ShadowTask:
    """A task shadowed by a student: its template and the skill (anything with ``predict``)."""

    task_id: str
    kind: TaskKind
    system: str
    prefix: str
    suffix: str
    student: Any

    def variable(self, system: str, user: str) -> str | None:
        """The variable part of ``user`` when the call is this task's, else ``None``."""
        if system != self.system or not user.startswith(self.prefix):
            return None
        if not user.endswith(self.suffix) or len(user) < len(self.prefix) + len(self.suffix):
            return None
        return user[len(self.prefix) : len(user) - len(self.suffix)]


@dataclass(frozen=True)
class ShadowRow:
    """One shadowed call: what the LLM and the student said, and how well they agree."""

    request_id: str
    task_id: str
    at: datetime
    score: float
    agree: bool
    llm_answer: str
    student_answer: str
    student_confidence: float
    student_ms: float


def _student_text(kind: TaskKind, prediction: Any) -> str:
    if kind == "classification":
        return str(prediction.label or "")
    if kind == "extraction":
        return json.dumps(dict(prediction.data), ensure_ascii=False, sort_keys=True)
    return str(prediction.text or "")


def _f1(a: str, b: str) -> float:
    x, y = Counter(a.lower().split()), Counter(b.lower().split())
    common = sum((x & y).values())
    if not common:
        return float(not x and not y)
    precision, recall = common / sum(y.values()), common / sum(x.values())
    return 2 * precision * recall / (precision + recall)


def agreement(kind: TaskKind, llm: str, prediction: Any) -> tuple[float, bool]:
    """``(score, agrees)`` of the student's ``prediction`` against the LLM's answer."""
    if kind == "classification":
        same = label_of(llm) == label_of(str(prediction.label or ""))
        return float(same), same
    if kind == "extraction":
        want = json_object(llm) or {}
        got = dict(prediction.data)
        if not want:
            return 0.0, False
        hits = sum(1 for k, v in want.items() if str(got.get(k, "")).strip() == str(v).strip())
        return hits / len(want), hits == len(want)
    score = _f1(llm, str(prediction.text or ""))
    return score, score >= AGREE_F1


class Shadow:
    """The shadowed tasks; :meth:`compare` runs their students on recorded calls."""

    def __init__(self, tasks: Sequence[ShadowTask]):
        self.tasks = list(tasks)

    def compare(self, calls: Sequence[tuple[str, datetime, str, str, str]]) -> list[ShadowRow]:
        """Rows for the calls that belong to a shadowed task.

        Args:
            calls: ``(request_id, at, system, user, llm_answer)`` of each call, unmasked.
        """
        out = []
        for task in self.tasks:
            mine = [(c, v) for c in calls if (v := task.variable(c[2], c[3])) is not None]
            if not mine:
                continue
            start = time.perf_counter()
            predictions = task.student.predict([v for _, v in mine])
            each_ms = (time.perf_counter() - start) * 1000 / len(mine)
            for ((rid, at, _, _, llm), _), pred in zip(mine, predictions, strict=True):
                score, agree = agreement(task.kind, llm, pred)
                out.append(ShadowRow(rid, task.task_id, at, score, agree, llm,
                                     _student_text(task.kind, pred), float(pred.confidence),
                                     each_ms))  # fmt: skip
        return out


def load_shadow(tasks_file: Path, students: Mapping[str, Path]) -> Shadow:
    """The shadow of ``students`` (task id → skill folder), templates from ``tasks_file``.

    ``tasks_file`` is what ``slmstack discover --json`` prints.

    Raises:
        ConfigError: the file is unreadable, or a task id is not in it.
    """
    from slmstack.skills.base import load

    try:
        tasks = {t["task_id"]: t for t in json.loads(tasks_file.read_text())["tasks"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"cannot read the tasks of {tasks_file} ({exc}); write it with "
            "`slmstack discover --json > tasks.json`"
        ) from None
    shadowed = []
    for task_id, folder in students.items():
        task = tasks.get(task_id)
        if task is None:
            raise ConfigError(
                f"task {task_id!r} is not in {tasks_file} (it has {', '.join(sorted(tasks))}); "
                "run `slmstack discover --json` again, or check the id"
            )
        shadowed.append(ShadowTask(task_id, task["kind"], task["system"], task["prefix"],
                                   task["suffix"], load(folder)))  # fmt: skip
    return Shadow(shadowed)


__all__ = ["AGREE_F1", "Shadow", "ShadowRow", "ShadowTask", "agreement", "load_shadow"]
