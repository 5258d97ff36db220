"""Checks that a labelled data set can train a classifier."""

from __future__ import annotations

import dataclasses
import warnings
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from slmstack.errors import DataError, DataWarning
from slmstack.types import Example

_T = TypeVar("_T")


def _row(example: Example) -> int | None:
    tail = example.source.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def refuse_unusable_rows(
    examples: Sequence[Example], *, path: Path | str | None = None, require_labels: bool = True
) -> None:
    """Raise :class:`DataError` at the first row that training refuses, naming its line.

    A row is refused when its text is empty or only whitespace, or, with
    ``require_labels``, when its label is empty. Evaluation calls this too, so that a
    score never includes rows the skill could not have been trained on.

    Example:
        >>> rows = [Example("hi", "greet", "d.csv:2"), Example(" ", "greet", "d.csv:3")]
        >>> refuse_unusable_rows(rows, path="d.csv")
        Traceback (most recent call last):
        ...
        slmstack.errors.DataError: d.csv:3: empty text; remove the row or fill in the text
    """
    for i, ex in enumerate(examples, start=1):
        if not isinstance(ex, Example):
            raise DataError(
                f"row {i} is a {type(ex).__name__} ({ex!r:.60}), not an slmstack.Example; "
                "build each row as Example(text, label), or read a file with "
                "slmstack.read_examples(path)",
                path=path,
            )
        if not ex.text.strip():
            raise DataError(
                "empty text; remove the row or fill in the text",
                path=path,
                row=_row(ex) or i,
            )
        if require_labels and not ex.label:
            raise DataError("empty label; every row needs a label", path=path, row=_row(ex) or i)


def _identity(value: object) -> Hashable:
    """What makes two examples the same: every field but ``source``, compared by value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__qualname__,
            tuple(
                _identity(getattr(value, f.name))
                for f in dataclasses.fields(value)
                if f.name != "source"
            ),
        )
    if isinstance(value, Mapping):
        items = sorted(((repr(k), _identity(v)) for k, v in value.items()), key=lambda kv: kv[0])
        return ("mapping", tuple(items))
    if isinstance(value, tuple | list):
        return (type(value).__name__, tuple(_identity(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def drop_duplicates(examples: Iterable[_T]) -> tuple[list[_T], int]:
    """Keep the first of each group of exact duplicates; return them and how many went.

    Call it before the train/validation split: a copy of a training row in the
    validation split is a question the model has already seen the answer to, and makes
    the validation score (and what is calibrated on it) look better than it is.

    Two examples are duplicates when all their fields are equal except ``source``, which
    says where a row came from, not what it says: for :class:`Example`, the same text
    and the same label (compared exactly, whitespace included). Tuples and other values
    are compared by value (by ``repr`` when they cannot be hashed). A
    :class:`DataWarning` says how many rows were dropped.

    Example:
        >>> rows = [Example("hi", "greet"), Example("bye", "leave"), Example("hi", "greet")]
        >>> kept, dropped = drop_duplicates(rows)
        >>> [ex.text for ex in kept], dropped
        (['hi', 'bye'], 1)
    """
    kept: list[_T] = []
    first: dict[Hashable, _T] = {}
    dropped = 0
    where = ""
    for ex in examples:
        key = _identity(ex)
        if key not in first:
            first[key] = ex
            kept.append(ex)
            continue
        if not dropped:
            copy, original = getattr(ex, "source", ""), getattr(first[key], "source", "")
            where = f" (the first: {copy} repeats {original})" if copy and original else ""
        dropped += 1
    if dropped:
        warnings.warn(
            f"dropped {dropped} exact duplicate rows of {len(kept) + dropped}, "
            f"keeping the first of each{where}, so that no copy of a training row is "
            "validated on.",
            DataWarning,
            stacklevel=2,
        )
    return kept, dropped


def validate_examples(
    examples: Sequence[Example], *, path: Path | str | None = None, min_per_label: int = 2
) -> None:
    """Raise :class:`DataError` for unusable data; warn about duplicates and conflicts.

    Checks, in order: empty texts, empty labels, a single class, labels with fewer than
    ``min_per_label`` examples. Rows that repeat a text and label but for spaces at its
    ends (exact copies are dropped by the skills' fit, which reports them) and texts with
    conflicting labels emit a :class:`DataWarning` with counts.
    """
    if not examples:
        raise DataError("no examples", path=path)
    refuse_unusable_rows(examples, path=path)
    counts = Counter(ex.label for ex in examples)
    if len(counts) < 2:
        only = next(iter(counts))
        raise DataError(
            f"only one class ({only!r}) in {len(examples)} rows; a classifier needs at "
            "least 2 labels. Check --label-column.",
            path=path,
        )
    rare = sorted(label for label, n in counts.items() if n < min_per_label)
    if rare:
        first = next(ex for ex in examples if ex.label == rare[0])
        shown = ", ".join(f"{lab!r} ({counts[lab]})" for lab in rare[:10])
        more = f" and {len(rare) - 10} more" if len(rare) > 10 else ""
        raise DataError(
            f"labels with fewer than {min_per_label} examples: {shown}{more}. Add examples "
            "or remove these labels; one example cannot be both trained on and validated.",
            path=path,
            row=_row(first),
        )
    by_text: dict[str, set[str]] = defaultdict(set)
    pair_counts = Counter((ex.text.strip(), ex.label) for ex in examples)
    for text, label in pair_counts:
        by_text[text].add(label)
    # Exact copies are dropped by every skill's fit, which says so; copies that differ
    # only in spacing are not, so they are the ones worth a warning here.
    exact = Counter((ex.text, ex.label) for ex in examples)
    duplicates = sum(n - 1 for n in pair_counts.values() if n > 1)
    duplicates -= sum(n - 1 for n in exact.values() if n > 1)
    conflicts = sum(1 for labels in by_text.values() if len(labels) > 1)
    where = f"{path}: " if path else ""
    if duplicates:
        warnings.warn(
            f"{where}{duplicates} rows repeat another row's text and label but for spaces at "
            "the ends; they are kept, so they weigh more in training. Deduplicate if that "
            "is not intended.",
            DataWarning,
            stacklevel=2,
        )
    if conflicts:
        warnings.warn(
            f"{where}{conflicts} texts appear with conflicting labels; the model cannot fit "
            "both. Review them.",
            DataWarning,
            stacklevel=2,
        )
