"""Knowledge bases of question/answer pairs: readers for CSV, TSV, JSONL and Markdown.

An entry has one answer and one or more ways of asking for it. In CSV/JSONL, rows that
share an ``id`` are the same entry asked differently (their answers must agree, or be
empty on all but one row); an optional ``alternates`` column lists more phrasings,
``|``-separated in CSV or as a list in JSONL. In Markdown every heading is a question
and the text under it, up to the next heading, is its answer.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmstack.data.markdown import headings as markdown_headings
from slmstack.data.readers import read_records
from slmstack.data.utf8 import read_utf8
from slmstack.errors import DataError, DataWarning

_SLUG_MAX = 60


@dataclass(frozen=True)
class KBEntry:
    """One knowledge-base entry: the answer and every phrasing that asks for it.

    Attributes:
        id: stable key used to update or remove the entry and to score evaluations.
        question: the canonical question.
        answer: the answer given verbatim when the entry matches.
        alternates: other phrasings of the question.
        source: where the entry came from (``file:line``).
    """

    id: str
    question: str
    answer: str
    alternates: tuple[str, ...] = ()
    source: str = field(default="", compare=False)

    @property
    def questions(self) -> tuple[str, ...]:
        """The canonical question followed by its alternates."""
        return (self.question, *self.alternates)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (alternates as a list)."""
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "alternates": list(self.alternates),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> KBEntry:
        """Inverse of :meth:`to_dict`."""
        return cls(
            id=str(obj["id"]),
            question=str(obj["question"]),
            answer=str(obj["answer"]),
            alternates=tuple(str(a) for a in obj.get("alternates", ())),
            source=str(obj.get("source", "")),
        )


def normalize_question(text: str) -> str:
    """Case-, width- and whitespace-insensitive form used to detect duplicate questions."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.split()).rstrip("?!. ")


def slugify(text: str) -> str:
    """A readable id derived from a question (``"How do I pay?"`` → ``"how-do-i-pay"``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", normalize_question(text)).strip("-")
    return slug[:_SLUG_MAX].rstrip("-") or "entry"


def _unique_slug(question: str, taken: set[str]) -> str:
    slug = base = slugify(question)
    n = 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    return slug


def _split_alternates(value: Any, path: Path, line: int) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise DataError("'alternates' must be a list of strings", path=path, row=line)
        return [v.strip() for v in value if v.strip()]
    if isinstance(value, str):
        return [v.strip() for v in value.split("|") if v.strip()]
    raise DataError(
        f"'alternates' must be a '|'-separated string or a list, got {type(value).__name__}",
        path=path,
        row=line,
    )


def _read_table(
    path: Path, *, id_column: str, question_column: str, answer_column: str, alternates_column: str
) -> list[KBEntry]:
    records = read_records(path)
    if not records:
        raise DataError("the knowledge base has no rows; add question/answer pairs", path=path)
    grouped: dict[str, dict[str, Any]] = {}
    for rec in records:
        for column, role in ((question_column, "question"), (answer_column, "answer")):
            if column not in rec.fields:
                available = ", ".join(repr(c) for c in rec.fields)
                raise DataError(
                    f"missing {role} column {column!r}; the file has {available}. "
                    f"Pass --{role}-column NAME.",
                    path=path,
                    row=rec.line,
                )
        for role, column in (("question", question_column), ("answer", answer_column)):
            if isinstance(rec.fields[column], list | dict):  # served verbatim: never "['x']"
                raise DataError(
                    f"the {role} is a JSON {type(rec.fields[column]).__name__}, not text; write "
                    f"the {role} as one string",
                    path=path,
                    row=rec.line,
                )
        question = str(rec.fields[question_column] or "").strip()
        answer = str(rec.fields[answer_column] or "").strip()
        if not question:
            raise DataError("empty question; fill it in or remove the row", path=path, row=rec.line)
        raw_id = rec.fields.get(id_column)
        key = str(raw_id).strip() if raw_id not in (None, "") else f"\0row{rec.line}"
        alternates = _split_alternates(rec.fields.get(alternates_column), path, rec.line)
        group = grouped.get(key)
        if group is None:
            grouped[key] = {
                "question": question,
                "answer": answer,
                "alternates": alternates,
                "line": rec.line,
                "id": None if key.startswith("\0") else key,
            }
            continue
        if answer and group["answer"] and answer != group["answer"]:
            raise DataError(
                f"rows with id {key!r} give different answers (first on line {group['line']}); "
                "rows that share an id are phrasings of one entry and must share its answer. "
                "Give the rows distinct ids, or make the answers identical.",
                path=path,
                row=rec.line,
            )
        group["answer"] = group["answer"] or answer
        group["alternates"].extend([question, *alternates])
    entries = []
    taken = {g["id"] for g in grouped.values() if g["id"]}
    for group in grouped.values():
        if not group["answer"]:
            raise DataError(
                f"question {group['question']!r} has no answer; fill in the {answer_column!r} "
                "column",
                path=path,
                row=group["line"],
            )
        entries.append(
            KBEntry(
                id=group["id"] or _unique_slug(group["question"], taken),
                question=group["question"],
                answer=group["answer"],
                alternates=tuple(group["alternates"]),
                source=f"{path}:{group['line']}",
            )
        )
    return entries


def _read_markdown(path: Path) -> list[KBEntry]:
    text = read_utf8(path)
    headings = markdown_headings(text)
    if not headings:
        raise DataError(
            "no headings found; a Markdown knowledge base has one heading per question "
            "('## How do I reset my password?') followed by its answer",
            path=path,
        )
    entries = []
    taken: set[str] = set()
    for i, h in enumerate(headings):
        end = headings[i + 1].start() if i + 1 < len(headings) else len(text)
        answer = text[h.end() : end].strip()
        line = text.count("\n", 0, h.start()) + 1
        if not answer:
            # A heading with no body groups the questions below it (a section title).
            continue
        question = h.group(2).strip()
        entries.append(
            KBEntry(_unique_slug(question, taken), question, answer, (), f"{path}:{line}")
        )
    if not entries:
        raise DataError("no heading has an answer under it", path=path)
    return entries


def read_kb(
    path: str | Path,
    *,
    id_column: str = "id",
    question_column: str = "question",
    answer_column: str = "answer",
    alternates_column: str = "alternates",
) -> list[KBEntry]:
    """Read and validate a knowledge base from CSV, TSV, JSONL or Markdown.

    Example:
        >>> kb = read_kb("faq.csv")  # doctest: +SKIP
        >>> kb[0].question, kb[0].answer[:20]  # doctest: +SKIP
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("no such file; check the path", path=p)
    if p.suffix.lower() in {".md", ".markdown"}:
        entries = _read_markdown(p)
    else:
        entries = _read_table(
            p,
            id_column=id_column,
            question_column=question_column,
            answer_column=answer_column,
            alternates_column=alternates_column,
        )
    return validate_kb(entries, path=p)


def validate_kb(entries: Iterable[KBEntry], *, path: Path | str | None = None) -> list[KBEntry]:
    """Check a knowledge base and return it with exact duplicate phrasings removed.

    Raises :class:`DataError` for an empty KB, empty fields, duplicate ids, and one
    question asked in two entries (the answerer could not choose between them). The
    same phrasing repeated inside one entry is dropped with a :class:`DataWarning`.
    """
    entries = list(entries)
    if not entries:
        raise DataError("the knowledge base is empty; add at least one question/answer", path=path)
    seen_ids: dict[str, KBEntry] = {}
    owner: dict[str, KBEntry] = {}
    cleaned = []
    dropped = 0
    for entry in entries:
        if not isinstance(entry, KBEntry):
            raise DataError(f"expected KBEntry objects, got {type(entry).__name__}", path=path)
        where = f" ({entry.source})" if entry.source else ""
        if not entry.id.strip():
            raise DataError(f"entry {entry.question!r}{where} has an empty id", path=path)
        if not entry.answer.strip():
            raise DataError(f"entry {entry.id!r}{where} has an empty answer", path=path)
        if entry.id in seen_ids:
            raise DataError(
                f"duplicate id {entry.id!r}{where}, first used by "
                f"{seen_ids[entry.id].source or 'an earlier entry'}; ids must be unique "
                "(merge the entries or rename one)",
                path=path,
            )
        seen_ids[entry.id] = entry
        kept: list[str] = []
        for q in entry.questions:
            if not q.strip():
                raise DataError(f"entry {entry.id!r}{where} has an empty question", path=path)
            norm = normalize_question(q)
            other = owner.get(norm)
            if other is None:
                owner[norm] = entry
                kept.append(q)
            elif other.id == entry.id:
                dropped += 1
            else:
                raise DataError(
                    f"the question {q!r} appears in entries {other.id!r} and {entry.id!r}{where}; "
                    "the answerer could not choose between them. Keep it in one entry only",
                    path=path,
                )
        cleaned.append(
            KBEntry(entry.id, kept[0], entry.answer, tuple(kept[1:]), entry.source)
            if len(kept) != len(entry.questions)
            else entry
        )
    if dropped:
        where = f"{path}: " if path else ""
        warnings.warn(
            f"{where}{dropped} repeated phrasings inside the same entry were dropped",
            DataWarning,
            stacklevel=2,
        )
    return cleaned


def entries_by_id(entries: Sequence[KBEntry]) -> dict[str, KBEntry]:
    """Index entries by id."""
    return {e.id: e for e in entries}
