"""Evaluation of summaries with ROUGE-1/2/L (the ``rouge-score`` package, stemmed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slmstack.data.readers import read_records
from slmstack.errors import DataError, MissingDependencyError
from slmstack.evaluation.base import Predictor
from slmstack.evaluation.speed import peak_rss_mb

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (×100, as papers report them) of predictions against references.

    Example:
        >>> rouge_scores(["the cat sat"], ["the cat sat down"])["rouge1"]  # doctest: +SKIP
        85.71...
    """
    try:
        from rouge_score import rouge_scorer
    except ImportError as exc:
        raise MissingDependencyError("rouge-score", "generate", "ROUGE evaluation") from exc
    if len(predictions) != len(references):
        raise DataError(
            f"{len(predictions)} predictions but {len(references)} references; they must pair up"
        )
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, ref in zip(predictions, references, strict=True):
        scores = scorer.score(ref, pred)
        for key in ROUGE_TYPES:
            totals[key] += scores[key].fmeasure
    n = max(1, len(predictions))
    return {key: 100 * value / n for key, value in totals.items()}


def evaluate_summarizer(
    skill: Predictor,
    data: Path,
    *,
    text_column: str = "text",
    label_column: str = "summary",
    limit: int | None = None,
    **_: Any,
) -> dict[str, Any]:
    """ROUGE-1/2/L, abstentions, tokens/s and peak memory on a file of texts and references.

    ``label_column`` names the reference summary (``slmstack eval DIR data.jsonl
    --text-column dialogue --label-column summary`` for DialogSum).
    """
    records = read_records(data)[:limit]
    texts, refs = [], []
    for r in records:
        for col in (text_column, label_column):
            if not isinstance(r.fields.get(col), str):
                raise DataError(
                    f"missing column {col!r}; the file has {', '.join(r.fields)}. "
                    "Pass --text-column / --label-column.",
                    path=data,
                    row=r.line,
                )
        texts.append(r.fields[text_column])
        refs.append(r.fields[label_column])
    preds = skill.predict(texts)
    outputs = [p.text or "" for p in preds]
    out_tokens = sum(p.usage.output_tokens for p in preds)
    seconds = sum(p.usage.latency_ms for p in preds) / 1000
    report: dict[str, Any] = {"n": len(texts), **rouge_scores(outputs, refs)}
    report["abstained"] = sum(1 for p in preds if p.abstained)
    report["cut_or_truncated"] = sum(1 for p in preds if p.warnings)
    report["speed"] = {
        "output_tokens_per_s": out_tokens / seconds if seconds > 0 else 0.0,
        "seconds_per_text": seconds / max(1, len(texts)),
        "peak_rss_mb": peak_rss_mb(),
    }
    return report
