"""SST-2 data for ``bench/sst2.py``: reading the splits and carving validation out of train.

GLUE's SST-2 training set holds about 67k *phrases*, many of them sub-phrases of the same
movie-review sentence ("hide new secretions from the parental units" and its parts), while
dev holds 872 whole sentences. A validation set of random training rows would share its
sub-phrases with the training rows, so its accuracy would flatter every system. Hence:

* validation takes ``n`` distinct training rows of at least ``min_words`` words (closer to
  dev's sentences), drawn with a fixed seed;
* every other training row that is a contiguous word span of a validation row, or that
  contains one, is dropped from the training pool, so no validation sentence (or a part
  of it) is ever trained on.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sst2"


@dataclass(frozen=True)
class Split:
    """Texts and their labels ("0" negative, "1" positive)."""

    texts: list[str]
    labels: list[str]

    def take(self, idx: Sequence[int]) -> Split:
        """The rows at ``idx``, in that order."""
        return Split([self.texts[i] for i in idx], [self.labels[i] for i in idx])


def read(split: str, folder: Path = DATA) -> Split:
    """``train``, ``dev`` or ``test`` (the text column: train's ``sentence``, else ``content``)."""
    with open(folder / f"{split}.tsv", encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        label_col = header.index("label")
        text_col = header.index("sentence" if "sentence" in header else "content")
        rows = [(r[text_col], r[label_col]) for r in reader if r]
    return Split([t for t, _ in rows], [y for _, y in rows])


def _spans(words: Sequence[str], lengths: set[int] | None = None) -> set[str]:
    """Every contiguous word span (of the given lengths, if any), joined by spaces."""
    n = len(words)
    sizes = range(1, n + 1) if lengths is None else sorted(x for x in lengths if x <= n)
    return {" ".join(words[i : i + size]) for size in sizes for i in range(n - size + 1)}


def carve_validation(
    train: Split, *, n: int, min_words: int, seed: int
) -> tuple[Split, Split, dict[str, int]]:
    """``(pool, validation, counts)``: validation rows out of ``train``, overlaps removed.

    ``counts`` says how many rows each step kept or dropped (reported in RESULTS).
    """
    first: dict[str, int] = {}
    for i, text in enumerate(train.texts):
        first.setdefault(text, i)
    unique = sorted(first.values())
    long_rows = [i for i in unique if len(train.texts[i].split()) >= min_words]
    rng = np.random.default_rng(seed)
    val_idx = sorted(rng.choice(long_rows, size=n, replace=False).tolist())
    val = train.take(val_idx)
    val_texts = {" ".join(t.split()) for t in val.texts}
    inside = set().union(*(_spans(t.split()) for t in val.texts))  # parts of a val row
    val_lengths = {len(t.split()) for t in val.texts}
    taken = set(val_idx)
    pool_idx = []
    dropped = 0
    for i in unique:
        if i in taken:
            continue
        words = train.texts[i].split()
        # a part of a validation row, or a longer phrase that contains one
        if " ".join(words) in inside or _spans(words, val_lengths) & val_texts:
            dropped += 1
            continue
        pool_idx.append(i)
    counts = {
        "train_rows": len(train.texts),
        "duplicates": len(train.texts) - len(unique),
        "rows_with_min_words": len(long_rows),
        "validation": len(val_idx),
        "dropped_overlapping_validation": dropped,
        "pool": len(pool_idx),
    }
    return train.take(pool_idx), val, counts


def subsample(pool: Split, size: int | None, seed: int) -> Split:
    """``size`` random rows of ``pool`` (all of it when ``size`` is None or larger)."""
    if size is None or size >= len(pool.texts):
        return pool
    idx = np.random.default_rng(seed).choice(len(pool.texts), size=size, replace=False)
    return pool.take(sorted(idx.tolist()))
