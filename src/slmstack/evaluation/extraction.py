"""Field-level evaluation of document extractors (exact match after normalisation)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from slmstack.data.fields import FieldExample, FieldSpec, gold_value, same_value, unreadable_values
from slmstack.errors import DataError, DataWarning
from slmstack.evaluation.base import Predictor
from slmstack.evaluation.speed import measure_speed
from slmstack.types import Prediction


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def _alnum(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def field_metrics(
    specs: Sequence[FieldSpec],
    examples: Sequence[FieldExample],
    preds: Sequence[Prediction],
    *,
    text_match: Literal["exact", "alnum"] = "exact",
) -> dict[str, Any]:
    """Per-field and micro precision/recall/F1; a value counts only if exactly right.

    Values are compared after normalisation: ISO dates, amounts as numbers, text
    case-folded with whitespace ignored (``text_match="alnum"`` also ignores punctuation,
    which separates OCR slips like ``1/9.`` for ``1/9,`` from real errors). A wrong value
    is a false positive and a false negative; a value predicted for an absent field is a
    false positive; an unreadable true value is a false negative.
    """
    per_field: dict[str, dict[str, float]] = {}
    total = [0, 0, 0]
    for spec in specs:
        tp = fp = fn = 0
        for ex, pred in zip(examples, preds, strict=True):
            raw = ex.values.get(spec.name)
            # an abstention (an empty document) has no record: every field is missing
            got = pred.data.get("fields", {}).get(spec.name, {}).get("value")
            try:
                # a blank value is an absent field, as in training (label_candidates)
                gold = gold_value(spec, raw) if raw and raw.strip() else None
            except DataError:
                gold, fn = None, fn + 1
            if got is not None and gold is not None:
                if spec.type == "text" and text_match == "alnum":
                    right = _alnum(str(got)) == _alnum(gold)
                else:
                    right = same_value(spec, str(got).casefold(), gold)
                if right:
                    tp += 1
                    continue
            fp += got is not None
            fn += gold is not None
        per_field[spec.name] = {**_prf(tp, fp, fn), "support": tp + fn}
        total = [total[0] + tp, total[1] + fp, total[2] + fn]
    return {"micro": _prf(*total), "per_field": per_field}


def evaluate_fields(
    skill: Predictor, data: Path, *, single_queries: int = 20, **_: Any
) -> dict[str, Any]:
    """Field F1 (exact after normalisation), per field and micro; speed and memory."""
    from slmstack.data.documents import read_field_examples

    examples = read_field_examples(data)
    specs = skill.specs_  # type: ignore[attr-defined]
    names = {s.name for s in specs}
    for i, ex in enumerate(examples):
        unknown = sorted(set(ex.values) - names)
        if unknown:  # a typo'd field would score as absent, in silence
            raise DataError(
                f"{ex.source or f'document #{i + 1}'}: values for {unknown}, which the skill's "
                f"schema does not declare (it has {sorted(names)}); fix the field names"
            )
    bad = unreadable_values(specs, examples)
    if bad:
        warnings.warn(
            f"{len(bad)} true value(s) cannot be read as their field's type and count as "
            f"misses: {'; '.join(str(u) for u in bad[:5])}",
            DataWarning,
            stacklevel=2,
        )
    texts = [ex.text for ex in examples]
    preds = skill.predict(texts)
    report = field_metrics(skill.specs_, examples, preds)  # type: ignore[attr-defined]
    out: dict[str, Any] = {
        "n": len(examples),
        **{f"micro_{k}": v for k, v in report["micro"].items()},
    }
    out["per_class"] = report["per_field"]
    out["speed"] = measure_speed(skill.predict, texts, single_queries=single_queries)
    return out


def evaluate_clauses(skill: Predictor, data: Path, **_: Any) -> dict[str, Any]:
    """Clause-level precision/recall/F1 per type and micro (multi-label); speed, memory."""
    import time

    from slmstack.data.documents import read_clause_examples
    from slmstack.evaluation.speed import peak_rss_mb

    finder: Any = skill  # contracts are split as the finder splits them in predict
    examples = read_clause_examples(data, min_chars=finder.min_chars, max_chars=finder.max_chars)
    start = time.perf_counter()
    probs = skill.predict_clauses(  # type: ignore[attr-defined]
        [ex.text for ex in examples], positions=[ex.position for ex in examples]
    )
    seconds = time.perf_counter() - start
    types, thresholds = skill.types_, skill.thresholds_  # type: ignore[attr-defined]
    per_type: dict[str, dict[str, float]] = {}
    total = [0, 0, 0]
    for j, t in enumerate(types):
        pred = probs[:, j] >= thresholds[j]
        gold = [t in ex.labels for ex in examples]
        tp = sum(1 for p, g in zip(pred, gold, strict=True) if p and g)
        fp = sum(1 for p, g in zip(pred, gold, strict=True) if p and not g)
        fn = sum(1 for p, g in zip(pred, gold, strict=True) if g and not p)
        per_type[t] = {**_prf(tp, fp, fn), "support": tp + fn}
        total = [total[0] + tp, total[1] + fp, total[2] + fn]
    unknown = sorted({lab for ex in examples for lab in ex.labels} - set(types))
    micro = _prf(*total)
    return {
        "n": len(examples),
        **{f"micro_{k}": v for k, v in micro.items()},
        "per_class": per_type,
        "types_not_learned": unknown,
        "speed": {
            "throughput_per_s": len(examples) / seconds if seconds else float("inf"),
            "peak_rss_mb": peak_rss_mb(),
        },
    }
