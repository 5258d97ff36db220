"""What skills of one family share: how they read training data and how they are scored.

A classifier (fine-tuned, language detector, LLM) trains on labelled texts and is scored
by accuracy and macro-F1; a tagger (fine-tuned or spaCy) trains on tagged texts and is
scored by entity F1. Each family is a mixin here, so the facts are written once and a
skill class still declares them itself by inheriting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from slmstack.data.readers import read_examples
from slmstack.data.tagging import TaggedExample, read_tagged
from slmstack.types import Example


class LabelledTexts:
    """Trains on labelled texts (CSV, TSV or JSONL); scored as a classifier."""

    @classmethod
    def read_training_data(
        cls, path: Path, *, text_column: str = "text", label_column: str = "label"
    ) -> list[Example]:
        """Labelled texts from CSV, TSV or JSONL (``text`` and ``label`` columns)."""
        return read_examples(path, text_column=text_column, label_column=label_column)

    def evaluate(self, data: Path, **options: Any) -> dict[str, Any]:
        """Accuracy, macro-F1, per-class report, confusion matrix, latency and memory."""
        from slmstack.evaluation.classification import evaluate_classifier

        return evaluate_classifier(self, data, **options)  # type: ignore[arg-type]


class TaggedTexts:
    """Trains on tagged texts (CoNLL or span JSONL); scored by entity F1 (seqeval)."""

    @classmethod
    def read_training_data(
        cls, path: Path, *, scheme: Literal["auto", "iob1", "iob2"] = "auto"
    ) -> list[TaggedExample]:
        """CoNLL (IOB1/IOB2, ``.conll``/``.txt``) or span JSONL."""
        return read_tagged(path, scheme=scheme)

    def evaluate(self, data: Path, **options: Any) -> dict[str, Any]:
        """Entity precision, recall and F1 (seqeval), overall and per type, and speed."""
        from slmstack.evaluation.tagging import evaluate_tagger

        return evaluate_tagger(self, data, **options)  # type: ignore[arg-type]
