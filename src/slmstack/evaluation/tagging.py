"""Evaluation of entity taggers on a CoNLL or span-JSONL file (seqeval, entity level)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slmstack.data.tagging import read_tagged
from slmstack.evaluation.base import Predictor
from slmstack.evaluation.metrics import tagger_metrics
from slmstack.evaluation.speed import measure_speed


def evaluate_tagger(
    skill: Predictor,
    data: Path,
    *,
    scheme: str = "auto",
    single_queries: int = 100,
    **_: Any,
) -> dict[str, Any]:
    """Entity precision/recall/F1 overall and per type, latency, throughput, memory."""
    examples = read_tagged(data, scheme=scheme)  # type: ignore[arg-type]
    texts = [ex.text for ex in examples]
    preds = skill.predict(texts)
    report = tagger_metrics(examples, [p.spans for p in preds])
    report["n"] = len(examples)
    report["per_class"] = report.pop("per_type")
    report["speed"] = measure_speed(skill.predict, texts, single_queries=single_queries)
    return report
