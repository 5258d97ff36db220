"""Classification metrics (scikit-learn underneath, JSON-friendly output)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from slmstack.data.tagging import TaggedExample, spans_to_tags, word_offsets
from slmstack.errors import MissingDependencyError
from slmstack.types import Span

NO_LABEL = ""
"""The predicted label of an abstention (an LLM's unreadable answer, say)."""


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    A prediction of ``NO_LABEL`` (an abstention) is an error of its text's true label and
    counted in ``abstained``; it is no class of its own, so it adds no class of F1 0 to
    macro-F1 (the confusion matrix keeps it, as a column of its own).
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    every = sorted(set(y_true) | set(y_pred))
    labels = [lab for lab in every if lab != NO_LABEL]
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "abstained": sum(1 for y in y_pred if y == NO_LABEL),
        "per_class": {
            lab: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, lab in enumerate(labels)
        },
        "confusion_matrix": {
            "labels": every,
            "matrix": confusion_matrix(y_true, y_pred, labels=every).tolist(),
        },
    }


def tagger_metrics(
    examples: Sequence[TaggedExample], predicted: Sequence[Sequence[Span]]
) -> dict[str, Any]:
    """Entity-level precision, recall and F1 (seqeval), overall and per entity type.

    Gold and predicted spans are both turned into IOB2 tags over the example's tokens
    (its CoNLL tokens when known), so the score is the usual CoNLL entity F1. Free text
    has no tokens: its words are also cut at every gold and predicted span boundary, so
    an entity counts only with its exact boundaries ("Kö" is not "Köln"), and two
    entities in one run of letters (Japanese and Chinese have no spaces) stay two.
    """
    try:
        from seqeval.metrics import classification_report
    except ImportError as exc:
        raise MissingDependencyError("seqeval", "extract", "Entity-level metrics") from exc
    y_true, y_pred = [], []
    for ex, spans in zip(examples, predicted, strict=True):
        offsets = ex.tokens or _cut(word_offsets(ex.text), [*ex.spans, *spans])
        y_true.append(spans_to_tags(offsets, ex.spans))
        y_pred.append(spans_to_tags(offsets, spans))
    if not any(t != "O" for seq in y_true + y_pred for t in seq):
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "per_type": {}}
    report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    micro = report["micro avg"]
    per_type = {
        k: {
            "precision": float(v["precision"]),
            "recall": float(v["recall"]),
            "f1": float(v["f1-score"]),
            "support": int(v["support"]),
        }
        for k, v in report.items()
        if not k.endswith(" avg")
    }
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "per_type": per_type,
    }


def _cut(offsets: Sequence[tuple[int, int]], spans: Sequence[Span]) -> list[tuple[int, int]]:
    """``offsets`` with each token cut at the span boundaries that fall inside it."""
    bounds = sorted({p for s in spans for p in (s.start, s.end)})
    out: list[tuple[int, int]] = []
    for a, b in offsets:
        edges = [a, *(p for p in bounds if a < p < b), b]
        out += itertools.pairwise(edges)
    return out
