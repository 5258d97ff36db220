"""``bench/speed.py``: paths, MiniLM's shape, and the BANKING77 data and split."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
DATA = HERE.parent.parent / "shared" / "datasets" / "banking77"
FINETUNE = HERE / "out" / "llm_vs_slm" / "finetune"  # bench/llm_vs_slm.py's (trained if missing)
OUT = HERE / "out" / "speed"
RESULTS = HERE / "results" / "speed.json"
H, FFN, LAYERS = 384, 1536, 6  # all-MiniLM-L6-v2
Proba = Callable[[Sequence[str]], np.ndarray]


def read(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="") as f:
        return [(r["text"], r["category"]) for r in csv.DictReader(f)]


def split_train() -> tuple[list[Any], list[Any]]:
    """Training texts and the 5% validation split (the finetune skill's own)."""
    from slmstack import Example
    from slmstack.data.splits import stratified_split
    from slmstack.data.validation import drop_duplicates

    rows = [Example(t, y) for t, y in read(DATA / "train.csv")]
    rows, _ = drop_duplicates(rows)
    train, val = stratified_split(rows, [r.label for r in rows], fraction=0.05, seed=0)
    return list(train), list(val)
