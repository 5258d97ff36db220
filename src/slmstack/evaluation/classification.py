"""Evaluation of single-label classifiers on a labelled file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slmstack.data.readers import read_examples
from slmstack.evaluation.base import evaluators
from slmstack.evaluation.metrics import classification_metrics
from slmstack.evaluation.speed import measure_speed
from slmstack.skills.base import Skill


@evaluators.register("slmstack.TextClassifier.v1")
def evaluate_classifier(
    skill: Skill,
    data: Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    single_queries: int = 100,
    **_: Any,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class report, confusion matrix, latency, throughput, memory."""
    examples = read_examples(
        data, text_column=text_column, label_column=label_column, validate=False
    )
    texts = [ex.text for ex in examples]
    preds = skill.predict(texts)
    report = classification_metrics([ex.label for ex in examples], [p.label or "" for p in preds])
    report["truncated_inputs"] = sum(1 for p in preds if p.warnings)
    report["speed"] = measure_speed(skill.predict, texts, single_queries=single_queries)
    return report
