"""Evaluation of single-label classifiers on a labelled file."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slmstack.data.readers import read_examples
from slmstack.data.validation import refuse_unusable_rows
from slmstack.errors import ConfigError, DataError, DataWarning
from slmstack.evaluation.base import Predictor
from slmstack.evaluation.metrics import classification_metrics
from slmstack.evaluation.speed import measure_speed
from slmstack.types import Example

_UNSEEN_CHOICES = ("error", "drop")


def split_unseen_labels(
    examples: list[Example],
    learned: Sequence[str],
    data: Path,
    mode: str,
    *,
    droppable: bool = True,
) -> tuple[list[Example], dict[str, int]]:
    """Refuse, or with ``mode="drop"`` leave out, rows whose label the skill never learned.

    Such a row can never be predicted right, so it only lowers macro-F1 and adds a class
    of F1 0 to its average: a score about the data, not the skill. ``droppable``: whether
    the caller offers ``unseen_labels="drop"`` (``slmstack export`` does not), which the
    refusal then names as a fix.
    """
    known = set(learned)
    unseen = Counter(ex.label for ex in examples if ex.label not in known)
    if not unseen:
        return examples, {}
    n = sum(unseen.values())
    shown = ", ".join(
        f"{lab!r} ({k} row{'' if k == 1 else 's'})" for lab, k in sorted(unseen.items())[:10]
    )
    more = f" and {len(unseen) - 10} more" if len(unseen) > 10 else ""
    if mode != "drop" or n == len(examples):
        first = next(ex for ex in examples if ex.label not in known)
        tail = first.source.rsplit(":", 1)[-1]
        drop = ""
        if n < len(examples):
            drop = (
                ", or drop those rows to score the others (--unseen-labels drop; in Python, "
                "unseen_labels='drop')"
                if droppable
                else ", or remove those rows from the file"
            )
        raise DataError(
            f"{n} of {len(examples)} rows have labels the skill never learned: {shown}{more}. "
            "They would count as errors in macro-F1. Check --label-column and the spelling "
            f"of the labels, evaluate a skill trained on these labels{drop}.",
            path=data,
            row=int(tail) if tail.isdigit() else None,
        )
    warnings.warn(
        f"{data}: DROPPED {n} of {len(examples)} rows whose labels the skill never learned "
        f"({shown}{more}); the metrics cover the other {len(examples) - n} rows only.",
        DataWarning,
        stacklevel=3,
    )
    return [ex for ex in examples if ex.label in known], dict(sorted(unseen.items()))


def evaluate_classifier(
    skill: Predictor,
    data: Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    single_queries: int = 100,
    unseen_labels: str = "error",
    **_: Any,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class report, confusion matrix, latency, throughput, memory.

    Rows that training refuses (an empty text or label) are refused here too. Rows
    whose label the skill never learned (``skill.classes_``) raise :class:`DataError`,
    or with ``unseen_labels="drop"`` are left out with a warning and reported as
    ``dropped_unseen`` and ``unseen_labels``.
    """
    if unseen_labels not in _UNSEEN_CHOICES:
        raise ConfigError(
            f"unseen_labels must be one of {', '.join(map(repr, _UNSEEN_CHOICES))}; "
            f"got {unseen_labels!r}"
        )
    examples = read_examples(
        data, text_column=text_column, label_column=label_column, validate=False
    )
    refuse_unusable_rows(examples, path=data)
    learned = getattr(skill, "classes_", None)
    unseen: dict[str, int] = {}
    if learned is not None:
        examples, unseen = split_unseen_labels(examples, learned, data, unseen_labels)
    texts = [ex.text for ex in examples]
    preds = skill.predict(texts)
    report = classification_metrics([ex.label for ex in examples], [p.label or "" for p in preds])
    report["reliability"] = reliability(
        [p.confidence for p in preds],
        [p.label == ex.label for p, ex in zip(preds, examples, strict=True)],
    )
    if learned is not None and unseen_labels == "drop":
        report["dropped_unseen"] = sum(unseen.values())
        report["unseen_labels"] = unseen
    report["truncated_inputs"] = sum(1 for p in preds if p.warnings)
    report["speed"] = measure_speed(skill.predict, texts, single_queries=single_queries)
    return report


def reliability(
    confidence: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> dict[str, Any]:
    """Predictions in ``bins`` equal-width confidence bins: count, mean confidence, accuracy.

    A calibrated skill has accuracy close to confidence in every bin (the reliability
    diagram of ``slmstack eval --html``); empty bins are left out.
    """
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    right = np.asarray(correct, dtype=np.float64)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    rows = [
        (
            b,
            int((which == b).sum()),
            float(conf[which == b].mean()),
            float(right[which == b].mean()),
        )
        for b in range(bins)
        if (which == b).any()
    ]
    return {
        "bins": bins,
        "bin": [r[0] for r in rows],
        "count": [r[1] for r in rows],
        "confidence": [round(r[2], 4) for r in rows],
        "accuracy": [round(r[3], 4) for r in rows],
    }
