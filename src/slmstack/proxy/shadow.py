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
proxy's database), masked as the traffic is, which ``slmstack promote`` reads. Once a task
is promoted and served (:mod:`slmstack.proxy.serving`), the student has already answered
on the request path: its prediction comes with the call (``known``), the row's ``kind``
says ``cascade`` (under the threshold, the LLM answered) or ``audit`` (the student
answered, the LLM was asked afterwards), and the student is not asked twice.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from slmstack.errors import ConfigError, SlmstackError
from slmstack.proxy.answers import TaskKind, json_object, label_of
from slmstack.proxy.pii import KINDS

_log = logging.getLogger(__name__)

AGREE_F1 = 0.5  # token F1 at which two generated texts count as agreeing


@dataclass(frozen=True)
class ShadowTask:
    """A task shadowed by a student: its template and the skill (anything with ``predict``).

    ``student_id`` tells one student of the task from the next (:func:`student_id`), so that
    a promotion weighs only the comparisons of the student it puts in service.
    """

    task_id: str
    kind: TaskKind
    system: str
    prefix: str
    suffix: str
    student: Any
    student_id: str = ""

    @functools.cached_property
    def _masked(self) -> tuple[re.Pattern[str], re.Pattern[str]] | None:
        """The template as patterns when it holds ``<KIND>`` (discovered in masked traffic)."""
        if not any(_KIND.search(x) for x in (self.system, self.prefix, self.suffix)):
            return None
        user = f"{_pattern(self.prefix)}(?P<variable>.*){_pattern(self.suffix)}"
        return re.compile(_pattern(self.system), re.S), re.compile(user, re.S)

    def variable(self, system: str, user: str) -> str | None:
        """The variable part of ``user`` when the call is this task's, else ``None``.

        A template discovered in masked traffic holds ``<PHONE>`` where its fixed text had
        personal data (the support line in a system prompt, say); there any value matches,
        in clear text, masked or reduced to its kind.
        """
        if self._masked is not None:
            if self._masked[0].fullmatch(system) is None:
                return None
            found = self._masked[1].fullmatch(user)
            return None if found is None else found["variable"]
        if system != self.system or not user.startswith(self.prefix):
            return None
        if not user.endswith(self.suffix) or len(user) < len(self.prefix) + len(self.suffix):
            return None
        return user[len(self.prefix) : len(user) - len(self.suffix)]

    def specs(self) -> Sequence[Any]:
        """The student's field specs, when it is a field extractor (else empty)."""
        skill = getattr(self.student, "skill", self.student)  # unwrap _OneAtATime
        return tuple(getattr(skill, "specs_", ()) or ())


_KIND = re.compile("<(?:" + "|".join(KINDS) + ")>")  # a mask token reduced to its kind


def _pattern(fixed: str) -> str:
    """``fixed`` text as a regular expression in which each ``<KIND>`` matches any value."""
    return ".+?".join(re.escape(part) for part in _KIND.split(fixed))


def owner(templates: Sequence[ShadowTask], system: str, user: str) -> tuple[ShadowTask, str] | None:
    """The task a call belongs to, with its variable part; ``None`` when no task's.

    Of the templates that match, the most specific (the longest fixed text) owns the call:
    ``Ticket: {x}`` also matches every call of ``Ticket: {x} Return the priority.``, which
    are that task's, so its student must neither learn from them nor answer them.
    """
    best: tuple[ShadowTask, str] | None = None
    longest = -1
    for task in templates:
        variable = task.variable(system, user)
        fixed = len(task.prefix) + len(task.suffix)
        if variable is not None and fixed > longest:
            best, longest = (task, variable), fixed
    return best


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
    kind: str = "shadow"  # shadow | cascade | audit (see the module)
    student: str = ""  # the ShadowTask's student_id: which student answered


def student_text(kind: TaskKind, prediction: Any) -> str:
    """The student's answer as the LLM would give it: the label, the JSON object, the text."""
    if kind == "classification":
        return str(prediction.label or "")
    if kind == "extraction":
        return json.dumps(student_fields(prediction), ensure_ascii=False, sort_keys=True)
    return str(prediction.text or "")


def student_fields(prediction: Any) -> dict[str, Any]:
    """An extraction student's fields as flat ``{name: value}`` (``None``: not found).

    A :class:`~slmstack.skills.fields.FieldExtractor` gives ``data["fields"][name]`` records
    with the normalised ``value``; any other extractor is taken as flat already.
    """
    data = dict(prediction.data)
    fields = data.get("fields")
    if isinstance(fields, Mapping) and all(isinstance(r, Mapping) for r in fields.values()):
        return {name: record.get("value") for name, record in fields.items()}
    return data


def _same_field(spec: Any, llm_value: Any, got: Any) -> bool:
    """Whether the LLM's raw value and the student's normalised one are the same value.

    With the student's field spec, the LLM's value is normalised as the extractor
    normalises gold values (ISO dates, decimal amounts, folded text); a value that does
    not parse as its type disagrees. Without a spec, the trimmed strings are compared.
    """
    if got is None or llm_value is None:
        return got is None and llm_value in (None, "")
    if spec is None:
        return str(got).strip() == str(llm_value).strip()
    from slmstack.data.fields import gold_value, same_value

    try:
        return same_value(spec, gold_value(spec, str(llm_value)), str(got))
    except (SlmstackError, ValueError, ArithmeticError):
        return False


def _f1(a: str, b: str) -> float:
    x, y = Counter(a.lower().split()), Counter(b.lower().split())
    common = sum((x & y).values())
    if not common:
        return float(not x and not y)
    precision, recall = common / sum(y.values()), common / sum(x.values())
    return 2 * precision * recall / (precision + recall)


def agreement(
    kind: TaskKind, llm: str, prediction: Any, specs: Sequence[Any] = ()
) -> tuple[float, bool]:
    """``(score, agrees)`` of the student's ``prediction`` against the LLM's answer.

    ``specs``: the extraction student's field specs (``FieldExtractor.specs_``), so that
    values compare as the extractor normalises them (a date the LLM wrote as 15/01/2018
    equals the student's 2018-01-15).
    """
    if kind == "classification":
        same = label_of(llm) == label_of(str(prediction.label or ""))
        return float(same), same
    if kind == "extraction":
        want = json_object(llm) or {}
        got = student_fields(prediction)
        if not want:
            return 0.0, False
        by_name = {getattr(s, "name", None): s for s in specs}
        hits = sum(_same_field(by_name.get(k), v, got.get(k)) for k, v in want.items())
        return hits / len(want), hits == len(want)
    score = _f1(llm, str(prediction.text or ""))
    return score, score >= AGREE_F1


class Shadow:
    """The shadowed tasks; :meth:`compare` runs their students on recorded calls."""

    def __init__(self, tasks: Sequence[ShadowTask], templates: Sequence[ShadowTask] = ()):
        """Shadow ``tasks``; ``templates`` are every known task (the tasks file's).

        A call is matched to the most specific of them (:func:`owner`); the shadowed
        ``tasks`` are always among them.
        """
        self.tasks = list(tasks)
        mine = {t.task_id for t in self.tasks}
        self.templates = self.tasks + [t for t in templates if t.task_id not in mine]

    def match(self, system: str, user: str) -> tuple[ShadowTask, str] | None:
        """The shadowed task that owns a call, with its variable part (else ``None``).

        A blank variable part is no student's to answer (distillation drops it): ``None``.
        """
        found = owner(self.templates, system, user)
        if found is None or found[0].student is None or not found[1].strip():
            return None
        return found

    def compare(
        self,
        calls: Sequence[tuple[str, datetime, str, str, str]],
        known: Sequence[Known | None] | None = None,
    ) -> list[ShadowRow]:
        """Rows for the calls that belong to a shadowed task.

        Args:
            calls: ``(request_id, at, system, user, llm_answer)`` of each call, unmasked.
            known: for each call, the student's prediction already made on the request
                path (a served task's), or ``None`` to ask the student now.
        """
        out = []
        byid = {t.task_id: t for t in self.tasks}
        for i, (rid, at, _, _, llm) in enumerate(calls):
            seen = known[i] if known is not None else None
            if seen is not None and seen.task_id in byid:
                task = byid[seen.task_id]
                score, agree = agreement(task.kind, llm, seen.prediction, task.specs())
                out.append(ShadowRow(rid, task.task_id, at, score, agree, llm,
                                     student_text(task.kind, seen.prediction),
                                     float(seen.prediction.confidence), seen.student_ms,
                                     seen.kind, task.student_id))  # fmt: skip
        fresh = [c for i, c in enumerate(calls) if known is None or known[i] is None]
        owned: dict[str, list[tuple[Any, str]]] = {}
        for c in fresh:
            if (found := self.match(c[2], c[3])) is not None:
                owned.setdefault(found[0].task_id, []).append((c, found[1]))
        for task in self.tasks:
            mine = owned.get(task.task_id, [])
            if not mine:
                continue
            start = time.perf_counter()
            try:
                predictions = task.student.predict([v for _, v in mine])
            except Exception as exc:  # a broken student must not cost the calls' records
                _log.error("the shadow student of task %s failed on %d calls, which are "
                           "recorded without a comparison: %s: %s", task.task_id, len(mine),
                           type(exc).__name__, exc)  # fmt: skip
                continue
            each_ms = (time.perf_counter() - start) * 1000 / len(mine)
            for ((rid, at, _, _, llm), _), pred in zip(mine, predictions, strict=True):
                score, agree = agreement(task.kind, llm, pred, task.specs())
                out.append(ShadowRow(rid, task.task_id, at, score, agree, llm,
                                     student_text(task.kind, pred), float(pred.confidence),
                                     each_ms, student=task.student_id))  # fmt: skip
        return out


@dataclass(frozen=True)
class Known:
    """A student's prediction made on the request path, for a call of a served task."""

    task_id: str
    prediction: Any
    student_ms: float
    kind: str  # the row's kind: cascade or audit


class _OneAtATime:
    """A skill whose ``predict`` runs in one thread at a time.

    The recorder's thread (shadowing) and the proxy's student thread (serving) may ask
    the same skill at once, and a Hugging Face fast tokenizer refuses to be used from two
    threads together ("Already borrowed").
    """

    def __init__(self, skill: Any):
        self.skill = skill
        self._lock = threading.Lock()

    def predict(self, texts: list[str]) -> Any:
        with self._lock:
            return self.skill.predict(texts)


def read_tasks(tasks_file: Path) -> dict[str, dict[str, Any]]:
    """The tasks of ``tasks_file`` (what ``slmstack discover --json`` prints), by task id.

    Raises:
        ConfigError: the file is unreadable or not such a file.
    """
    try:
        tasks = json.loads(tasks_file.read_text(encoding="utf-8"))["tasks"]
        return {str(t["task_id"]): dict(t) for t in tasks}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"cannot read the tasks of {tasks_file} ({exc}); write it with "
            "`slmstack discover --json > tasks.json`"
        ) from None


def load_shadow(tasks_file: Path, students: Mapping[str, Path]) -> Shadow:
    """The shadow of ``students`` (task id → skill folder), templates from ``tasks_file``.

    ``tasks_file`` is what ``slmstack discover --json`` prints.

    Raises:
        ConfigError: the file is unreadable, or a task id is not in it.
    """
    from slmstack.skills.base import load

    tasks = read_tasks(tasks_file)
    shadowed = []
    for task_id, folder in students.items():
        task = tasks.get(task_id)
        if task is None:
            raise ConfigError(
                f"task {task_id!r} is not in {tasks_file} (it has {', '.join(sorted(tasks))}); "
                "run `slmstack discover --json` again, or check the id"
            )
        shadowed.append(ShadowTask(task_id, task["kind"], task["system"], task["prefix"],
                                   task["suffix"], _OneAtATime(load(folder)),
                                   student_id(folder)))  # fmt: skip
    return Shadow(shadowed, read_templates(tasks_file))


def student_id(folder: Path) -> str:
    """A skill folder's identity: its ``config.json`` holds the sha256 of every weight file."""
    return hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()[:16]


def read_templates(tasks_file: Path) -> list[ShadowTask]:
    """Every task of ``tasks_file`` as a template to match calls with (no student).

    Raises:
        ConfigError: the file is unreadable, or a task lacks its template.
    """
    out = []
    for task_id, task in read_tasks(tasks_file).items():
        try:
            out.append(ShadowTask(task_id, task["kind"], task["system"], task["prefix"],
                                  task["suffix"], None))  # fmt: skip
        except KeyError as exc:
            raise ConfigError(
                f"task {task_id!r} of {tasks_file} has no {exc}; write the file with "
                "`slmstack discover --json`"
            ) from None
    return out


__all__ = [
    "AGREE_F1", "Known", "Shadow", "ShadowRow", "ShadowTask", "agreement", "load_shadow",
    "owner", "read_tasks", "read_templates", "student_fields", "student_id",
    "student_text",
]  # fmt: skip
