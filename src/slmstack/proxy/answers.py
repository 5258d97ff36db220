"""What a task's answers say about its replacement: a classification, an extraction, or not.

The method reads only the LLM's answers (and the labels the prompt lists):

- an **extraction** when at least 80% of the answers are JSON objects (fenced in
  ```` ```json ```` or not) and their keys are stable: the keys found in half the objects
  or more form the schema, and each object's keys overlap it by 0.8 (Jaccard) on average;
- a **classification** when 95% of the answers are short (at most five words, 60
  characters) and either 80% of them are labels the prompt's fixed text names, or they
  take few distinct values (at most half as many as there are answers, and 500);
- a **generation** otherwise.

:class:`Answers` keeps counts rather than texts, so that two groups of calls can be
weighed together (:meth:`Answers.merged`) without reading their answers again: task
discovery asks, for every pair of candidate templates, whether they are one task.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

TaskKind = Literal["classification", "extraction", "generation"]
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)
_EDGE = " \t\n\"'`.,;:!"


@dataclass(frozen=True)
class Verdict:
    """A task's kind, the evidence, and its labels (classification) or keys (extraction)."""

    kind: TaskKind
    why: str
    labels: tuple[str, ...] = ()
    schema: tuple[str, ...] = ()


def label_of(text: str) -> str:
    """An answer as a label: trimmed of quotes and punctuation, lowercased."""
    return " ".join(text.strip(_EDGE).lower().split())


def json_object(text: str) -> dict[str, Any] | None:
    """The JSON object an answer holds (fenced or not), or ``None``."""
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@dataclass
class Answers:
    """Counts over a group of answers, enough to tell the task's kind."""

    n: int = 0
    keysets: Counter[frozenset[str]] = field(default_factory=Counter)  # of JSON objects
    labels: Counter[str] = field(default_factory=Counter)  # of short answers
    long: int = 0  # answers too long to be a label

    @classmethod
    def of(cls, outputs: Iterable[str]) -> Answers:
        """The counts of ``outputs``."""
        out = cls()
        for text in outputs:
            out.n += 1
            obj = json_object(text)
            if obj is not None:
                out.keysets[frozenset(obj)] += 1
            label = label_of(text)
            if label and len(text) <= 60 and len(label.split()) <= 5:
                out.labels[label] += 1
            else:
                out.long += 1
        return out

    def merged(self, other: Answers) -> Answers:
        """The counts of both groups together."""
        return Answers(self.n + other.n, self.keysets + other.keysets,
                       self.labels + other.labels, self.long + other.long)  # fmt: skip

    def verdict(self, fixed_text: str = "") -> Verdict:
        """The task's kind (see the module docstring); ``fixed_text``: the prompt's."""
        n = self.n
        if n == 0:
            return Verdict("generation", "no answers recorded")
        objects = sum(self.keysets.values())
        if objects >= 0.8 * n:
            keys = Counter[str]()
            for keyset, count in self.keysets.items():
                for key in keyset:
                    keys[key] += count
            schema = frozenset(k for k, c in keys.items() if c >= 0.5 * objects)
            overlap = sum(c * len(ks & schema) / max(1, len(ks | schema))
                          for ks, c in self.keysets.items())  # fmt: skip
            if schema and overlap >= 0.8 * objects:
                keys_text = ", ".join(sorted(schema))
                return Verdict("extraction", f"{objects}/{n} answers are JSON objects with keys "
                               f"{keys_text}", schema=tuple(sorted(schema)))  # fmt: skip
            return Verdict("generation", f"{objects}/{n} answers are JSON with no stable keys")
        short = sum(self.labels.values())
        if short >= 0.95 * n:
            fixed = fixed_text.lower()
            listed = sum(c for lab, c in self.labels.items() if lab in fixed)
            ranked = tuple(lab for lab, _ in self.labels.most_common())
            distinct = len(self.labels)
            if listed >= 0.8 * n:
                return Verdict("classification", f"{listed}/{n} answers are labels the prompt "
                               f"lists ({distinct} distinct)", labels=ranked)  # fmt: skip
            if distinct <= max(2, n // 2) and distinct <= 500:
                return Verdict("classification", f"{n} short answers take {distinct} distinct "
                               "values", labels=ranked)  # fmt: skip
        return Verdict("generation", "answers are free text")


def infer_kind(outputs: Iterable[str], fixed_text: str = "") -> Verdict:
    """The kind of a task whose LLM answered ``outputs``.

    Example:
        >>> infer_kind(["yes", "no", "Yes."]).kind
        'classification'
    """
    return Answers.of(outputs).verdict(fixed_text)


__all__ = ["Answers", "TaskKind", "Verdict", "infer_kind", "json_object", "label_of"]
