"""Checks that a labelled data set can train a classifier."""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from slmstack.errors import DataError, DataWarning
from slmstack.types import Example


def _row(example: Example) -> int | None:
    tail = example.source.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def validate_examples(
    examples: Sequence[Example], *, path: Path | str | None = None, min_per_label: int = 2
) -> None:
    """Raise :class:`DataError` for unusable data; warn about duplicates and conflicts.

    Checks, in order: empty texts, empty labels, a single class, labels with fewer than
    ``min_per_label`` examples. Exact duplicate rows and texts with conflicting labels
    emit a :class:`DataWarning` with counts.
    """
    if not examples:
        raise DataError("no examples", path=path)
    for i, ex in enumerate(examples, start=1):
        if not ex.text.strip():
            raise DataError(
                "empty text; remove the row or fill in the text",
                path=path,
                row=_row(ex) or i,
            )
        if not ex.label:
            raise DataError("empty label; every row needs a label", path=path, row=_row(ex) or i)
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
    duplicates = sum(n - 1 for n in pair_counts.values() if n > 1)
    conflicts = sum(1 for labels in by_text.values() if len(labels) > 1)
    where = f"{path}: " if path else ""
    if duplicates:
        warnings.warn(
            f"{where}{duplicates} duplicate rows (same text and label); they weigh more in "
            "training. Deduplicate if that is not intended.",
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
