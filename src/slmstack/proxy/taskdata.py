"""A discovered task's recorded calls as training data: the variable part in, the answer out.

The method: the task's template (system prompt and the fixed text around the variable
part, from ``slmstack discover --json``) selects its calls exactly as the shadow does
(:meth:`~slmstack.proxy.shadow.ShadowTask.variable`). Only calls the LLM answered well
count: status 200, nothing the proxy could not read, not cut at ``max_tokens``
(``finish_reason`` ``length``), and not answered by a student (a student must not learn
its own answers). Each call gives one example:

- **classification**: the answer as a label (:func:`~slmstack.proxy.answers.label_of`),
  kept only when it is one of the task's labels; the student learns the LLM's most
  frequent spelling of each label (``Positive``, not ``positive``), so that a served
  answer reads like the LLM's;
- **extraction**: the answer's JSON object, restricted to the task's keys. The field
  extractor learns from values it can find in the text (a line holding a text value, a
  date or amount equal after normalisation), so a call whose value is nowhere in its
  text (the LLM reformatted or invented it) is dropped, and counted per field. Each
  field's type (``date``, ``amount`` or ``text``) is read from the values themselves;
- **generation**: refused (no small generator is distilled from traffic yet).

Texts repeat in real traffic; each distinct variable part is kept once, with its most
frequent answer (the first on a tie). Masked traffic trains on the masked text with each
``<KIND:token>`` reduced to ``<KIND>`` (the token's random payload is noise to a
student), or on the original text when the operator's masking key is given.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from slmstack.errors import ConfigError, DataError
from slmstack.proxy.answers import TaskKind, json_object, label_of
from slmstack.proxy.masking import strip_tokens, unmask
from slmstack.proxy.shadow import ShadowTask, owner, read_tasks
from slmstack.proxy.traffic import TrafficRow

Masking = Literal["none", "unmasked", "tokens"]
_AMOUNT_CHARS = re.compile(r"^[\d\s.,'()+-]+$")  # what is left of an amount without currency
_CURRENCY = re.compile(r"[A-Za-z]{1,3}|[$€£¥]")


@dataclass(frozen=True)
class RecordedTask:
    """A task of ``slmstack discover --json``: its template and what its answers are."""

    task_id: str
    kind: TaskKind
    system: str
    prefix: str
    suffix: str
    labels: tuple[str, ...] = ()
    schema: tuple[str, ...] = ()

    @property
    def template(self) -> ShadowTask:
        """The task as the shadow matches it (no student)."""
        return ShadowTask(self.task_id, self.kind, self.system, self.prefix, self.suffix, None)


def read_task(tasks_file: Path, task_id: str) -> RecordedTask:
    """Task ``task_id`` of ``tasks_file`` (what ``slmstack discover --json`` prints).

    Raises:
        ConfigError: the file is unreadable, or has no such task.
    """
    tasks = read_tasks(tasks_file)
    task = tasks.get(task_id)
    if task is None:
        raise ConfigError(
            f"task {task_id!r} is not in {tasks_file} (it has {', '.join(sorted(tasks))}); "
            "pass one of those to --task, or run `slmstack discover --json` again"
        )
    try:
        return RecordedTask(task_id, task["kind"], task["system"], task["prefix"],
                            task["suffix"], tuple(task.get("labels") or ()),
                            tuple(task.get("schema") or ()))  # fmt: skip
    except KeyError as exc:
        raise ConfigError(
            f"task {task_id!r} of {tasks_file} has no {exc}; write the file with "
            "`slmstack discover --json`"
        ) from None


@dataclass
class TaskData:
    """A task's training examples from recorded traffic, and what was left out.

    Attributes:
        task: the task.
        texts: the variable parts, one per distinct text.
        targets: the LLM's label (classification) or field values (extraction) of each.
        calls: the task's calls among the recorded rows (all of them, failed ones too).
        cost_nusd: what the LLM calls among them cost (nano-dollars, priced ones).
        unpriced: LLM calls among them whose cost is unknown.
        dropped: calls left out, by reason.
        dropped_fields: extraction calls left out because a field's value is not in the text.
        masking: ``none`` (plain traffic), ``unmasked`` (with the key) or ``tokens``
            (masked text, tokens reduced to ``<KIND>``).
    """

    task: RecordedTask
    texts: list[str]
    targets: list[Any]
    calls: int
    cost_nusd: int
    unpriced: int
    dropped: Counter[str] = field(default_factory=Counter)
    dropped_fields: Counter[str] = field(default_factory=Counter)
    masking: Masking = "none"
    field_types: dict[str, str] = field(default_factory=dict)


def task_data(
    rows: Sequence[TrafficRow],
    task: RecordedTask,
    *,
    key: str | None = None,
    others: Sequence[ShadowTask] = (),
) -> TaskData:
    """The training examples of ``task`` in ``rows`` (see the module docstring).

    Args:
        rows: recorded calls, in any order.
        task: the task (:func:`read_task`).
        key: the masking key, to train on the original text of masked calls.
        others: the other known tasks (:func:`~slmstack.proxy.shadow.read_templates`): a
            call a more specific one also matches is that task's, not this one's.

    Raises:
        ConfigError: the task is a generation.
        DataError: no call of the task, or none usable.
    """
    if task.kind == "generation":
        raise ConfigError(
            f"task {task.task_id} is a generation (free-text answers); `slmstack distill "
            "--task` trains classifiers and field extractors only. Keep this task on the LLM, "
            "or, if its answers are really labels or JSON, record more calls and run "
            "`slmstack discover` again"
        )
    matcher = task.template
    templates = [matcher, *(t for t in others if t.task_id != task.task_id)]
    dropped: Counter[str] = Counter()
    pairs: list[tuple[str, str]] = []  # (text, answer) of each usable call
    calls = cost = unpriced = 0
    masked = False
    for row in rows:
        found = owner(templates, row.system, row.user)
        if found is None or found[0] is not matcher:
            continue
        variable = found[1]
        calls += 1
        by_llm = row.answered_by == "llm"
        if by_llm and row.cost_status == "priced":
            cost += row.cost_nusd
        elif by_llm:
            unpriced += 1
        if not by_llm:
            dropped["answered by the student"] += 1
        elif row.status != 200 or row.problem:
            dropped["failed call"] += 1
        elif row.finish_reason == "length":
            dropped["answer cut at max_tokens"] += 1
        else:
            masked = masked or row.masked
            answer = row.response
            if row.masked:
                variable, answer = _readable(variable, key), _readable(answer, key)
            if not variable.strip():
                dropped["empty text"] += 1
            else:
                pairs.append((variable, answer))
    if calls == 0:
        raise DataError(
            f"no recorded call matches task {task.task_id} (its template "
            f"{task.prefix[:40]!r}...{task.suffix[-40:]!r}); pass the --ledger the tasks were "
            "discovered in, or run `slmstack discover --json` again"
        )
    data = TaskData(task, [], [], calls, cost, unpriced, dropped,
                    masking=("unmasked" if key else "tokens") if masked else "none")  # fmt: skip
    kept = _labels(data, pairs) if task.kind == "classification" else _fields(data, pairs)
    _dedupe(data, kept)
    if not data.texts:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(dropped.items()) if n)
        raise DataError(
            f"none of the {calls} calls of task {task.task_id} is usable ({reasons}); record "
            "more of its traffic"
        )
    return data


def _readable(text: str, key: str | None) -> str:
    return unmask(text, key) if key else strip_tokens(text)


def _dedupe(data: TaskData, kept: list[tuple[str, Any]]) -> None:
    """One example per distinct text, with its most frequent target (the first on a tie)."""
    by_text: dict[str, Counter[str]] = defaultdict(Counter)
    for text, target in kept:
        by_text[text][json.dumps(target, sort_keys=True)] += 1
    data.dropped["duplicate text"] += len(kept) - len(by_text)
    data.texts = list(by_text)
    data.targets = [json.loads(c.most_common(1)[0][0]) for c in by_text.values()]


def _labels(data: TaskData, pairs: list[tuple[str, str]]) -> list[tuple[str, Any]]:
    """Classification: answers in the task's label set, in the LLM's usual spelling."""
    allowed = set(data.task.labels)
    spelling: dict[str, Counter[str]] = defaultdict(Counter)
    kept = []
    for text, answer in pairs:
        label = label_of(answer)
        if not label:
            data.dropped["empty answer"] += 1
        elif allowed and label not in allowed:
            data.dropped["answer not in the label set"] += 1
        else:
            spelling[label][answer.strip().strip("\"'`.,;:! ")] += 1
            kept.append((text, label))
    shown = {label: forms.most_common(1)[0][0] for label, forms in spelling.items()}
    return [(text, shown[label]) for text, label in kept]


def _fields(data: TaskData, pairs: list[tuple[str, str]]) -> list[tuple[str, Any]]:
    """Extraction: JSON answers whose values are all found in their text."""
    keys = list(data.task.schema)
    objects: list[tuple[str, dict[str, str | None]]] = []
    for text, answer in pairs:
        obj = json_object(answer)
        if obj is None:
            data.dropped["answer not a JSON object"] += 1
            continue
        objects.append((text, {k: _scalar(obj.get(k)) for k in (keys or sorted(obj))}))
    if not objects:
        return []
    names = keys or sorted({k for _, v in objects for k in v})
    data.field_types = {k: _field_type([v[k] for _, v in objects if v.get(k)]) for k in names}
    specs = field_specs(data.field_types)
    kept: list[tuple[str, Any]] = []
    seen: dict[str, list[str]] = {}  # a repeated call is located once
    for text, values in objects:
        memo = json.dumps([text, values], sort_keys=True)
        if memo not in seen:
            seen[memo] = [s.name for s in specs if values.get(s.name)
                          and not _in_text(s, text, values)]  # fmt: skip
        if seen[memo]:
            data.dropped["a field value is not in the text"] += 1
            data.dropped_fields.update(seen[memo])
        else:
            kept.append((text, values))
    return kept


def _scalar(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None  # a nested value cannot be a field of the extractor
    text = str(value).strip()
    return text or None


def _field_type(values: Sequence[str | None]) -> str:
    """``date`` or ``amount`` when 80% of the values read as one, else ``text``."""
    from slmstack.data.normalizers import parse_amount, parse_date

    def share(ok: Any) -> float:
        hits = 0
        for v in values:
            with contextlib.suppress(DataError, ValueError):
                hits += bool(ok(v))
        return hits / len(values) if values else 0.0

    if share(parse_date) >= 0.8:
        return "date"
    # parse_amount finds a number inside any text; an amount field holds little else.
    if share(lambda v: _AMOUNT_CHARS.match(_CURRENCY.sub("", v)) and parse_amount(v)) >= 0.8:
        return "amount"
    return "text"


def field_specs(types: Mapping[str, str]) -> list[Any]:
    """The extractor's schema for fields of these types (dates read day first)."""
    from slmstack.data.fields import parse_schema

    return parse_schema(dict(types))


def _in_text(spec: Any, text: str, values: Mapping[str, str | None]) -> bool:
    """Whether the extractor would find ``values[spec.name]`` among ``text``'s candidates."""
    from slmstack.skills._field_features import candidates, label_candidates, split_lines

    lines = split_lines(text)
    try:
        return any(label_candidates(spec, candidates(spec, lines), lines, values[spec.name], ""))
    except DataError:  # a date or amount the normalisers cannot read
        return False


__all__ = ["Masking", "RecordedTask", "TaskData", "field_specs", "read_task", "task_data"]
