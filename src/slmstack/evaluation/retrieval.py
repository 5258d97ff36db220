"""Evaluation of the retrieval skills: FAQ answering and grounded troubleshooting.

The data file has a text column and a label column. For the FAQ the label is the id of
the entry that answers the query; for the troubleshooter it is (part of) the source
that holds the answer, such as a file name. An empty label, or ``oos``, marks a query
that the skill should decline: that is what abstain precision and recall measure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.data.readers import read_examples
from slmstack.data.validation import refuse_unusable_rows
from slmstack.errors import DataError
from slmstack.evaluation.base import Predictor
from slmstack.evaluation.speed import measure_speed
from slmstack.training.calibration import expected_calibration_error
from slmstack.types import Prediction

OUT_OF_SCOPE = frozenset({"", "oos"})


def _read(data: Path, text_column: str, label_column: str) -> tuple[list[str], list[str | None]]:
    examples = read_examples(
        data, text_column=text_column, label_column=label_column, validate=False
    )
    # An empty label is not refused: it marks a query the skill should decline.
    refuse_unusable_rows(examples, path=data, require_labels=False)
    gold = [None if ex.label.strip() in OUT_OF_SCOPE else ex.label.strip() for ex in examples]
    return [ex.text for ex in examples], gold


def _share(hits: NDArray[np.bool_], of: NDArray[np.bool_]) -> float | None:
    """The share of ``of`` that ``hits``; ``None`` when ``of`` is empty (a rate of nothing).

    0.0 there read as a failure: ``abstain_recall`` 0 on a file with no out-of-scope query.
    """
    return float((hits & of).sum() / of.sum()) if of.any() else None


def abstention_metrics(preds: list[Prediction], gold: list[str | None]) -> dict[str, Any]:
    """Abstain precision (declining was right) and recall (declined when it should have).

    A rate whose denominator is empty (recall on a file without out-of-scope queries,
    precision of a skill that never declined) is ``None``.
    """
    abstained = np.array([p.abstained is not None for p in preds], dtype=bool)
    oos = np.array([g is None for g in gold], dtype=bool)
    return {
        "n": len(gold),
        "n_in_scope": int((~oos).sum()),
        "n_out_of_scope": int(oos.sum()),
        "abstain_rate": float(abstained.mean()) if len(gold) else 0.0,
        "abstain_precision": _share(oos, abstained),
        "abstain_recall": _share(abstained, oos),
        "wrong_abstain_rate_in_scope": _share(abstained, ~oos),
    }


def evaluate_faq(
    skill: Predictor,
    data: Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    single_queries: int = 100,
    **_: Any,
) -> dict[str, Any]:
    """Top-1 accuracy in scope, wrong answers, abstain precision/recall, ECE, speed."""
    texts, gold = _read(data, text_column, label_column)
    known = {e.id for e in getattr(skill, "kb", [])}
    unknown = sorted({g for g in gold if g is not None and known and g not in known})
    if unknown:  # a typo'd id could never be answered right: a score about the file
        raise DataError(
            f"{len(unknown)} entry ids are not in the skill's knowledge base: "
            f"{', '.join(repr(u) for u in unknown[:10])}; fix them in --label-column (an "
            "empty label or 'oos' marks a query outside the knowledge base)",
            path=data,
        )
    preds = skill.predict(texts)
    report = abstention_metrics(preds, gold)
    in_scope = [i for i, g in enumerate(gold) if g is not None]
    # the nearest entry, answered or not: retrieval quality apart from the threshold
    top = [p.label or p.data.get("nearest", {}).get("entry", {}).get("id") for p in preds]
    answered = [p.abstained is None for p in preds]
    report["top1_accuracy"] = (
        float(np.mean([top[i] == gold[i] for i in in_scope])) if in_scope else None
    )
    report["wrong_answer_rate_in_scope"] = (
        float(np.mean([answered[i] and preds[i].label != gold[i] for i in in_scope]))
        if in_scope
        else None
    )
    n_answered = sum(answered)
    report["answered_accuracy"] = (  # None: nothing was answered, so no accuracy
        float(sum(p.label == g for p, g, a in zip(preds, gold, answered, strict=True) if a))
        / n_answered
        if n_answered
        else None
    )
    # Is the confidence the probability that the top entry is the right answer?
    conf = np.array([p.confidence for p in preds])
    ok = np.array([t == g for t, g in zip(top, gold, strict=True)], dtype=np.int64)
    report["ece"] = expected_calibration_error(np.stack([1 - conf, conf], axis=1), ok)
    report["truncated_inputs"] = sum(1 for p in preds if p.warnings)
    report["speed"] = measure_speed(skill.predict, texts, single_queries=single_queries)
    return report


def evaluate_troubleshooter(
    skill: Predictor,
    data: Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    **_: Any,
) -> dict[str, Any]:
    """Retrieval and citation hit rates of the expected source, abstention, tokens, time.

    Each query calls the generator once, so there is no separate speed pass.
    """
    texts, gold = _read(data, text_column, label_column)
    sources = {c.source for c in getattr(skill, "chunks_", {}).values()}
    expected = {str(g) for g in gold if g is not None}
    unknown = sorted(g for g in expected if sources and not any(g in s for s in sources))
    if unknown:  # checked before a generator is called: it would score 0 at full cost
        raise DataError(
            f"{len(unknown)} expected sources match no document of the skill: "
            f"{', '.join(repr(u) for u in unknown[:5])}; a label is part of a document's "
            f"path (as {next(iter(sorted(sources)))!r}), or empty/'oos' for a question no "
            "document answers",
            path=data,
        )
    preds = skill.predict(texts)
    report = abstention_metrics(preds, gold)
    in_scope = [i for i, g in enumerate(gold) if g is not None]

    def hit(i: int, field: str) -> bool:
        return any(str(gold[i]) in c["source"] for c in preds[i].data.get(field, ()))

    report["retrieval_hit_rate"] = (
        float(np.mean([hit(i, "retrieved") for i in in_scope])) if in_scope else None
    )
    report["citation_hit_rate"] = (
        float(np.mean([hit(i, "citations") for i in in_scope])) if in_scope else None
    )
    reasons: dict[str, int] = {}
    for p in preds:
        if p.abstained:
            reasons[p.abstained] = reasons.get(p.abstained, 0) + 1
    report["abstain_reasons"] = reasons
    answered = [p for p in preds if p.abstained is None]
    report["mean_steps"] = (
        float(np.mean([len(p.data["steps"]) for p in answered])) if answered else 0.0
    )
    report["answers_with_steps_dropped"] = sum(  # answers, not steps: see each warning
        1 for p in preds if any("were dropped" in w for w in p.warnings)
    )
    report["output_tokens_mean"] = float(np.mean([p.usage.output_tokens for p in preds]))
    report["latency_ms_mean"] = float(np.mean([p.usage.latency_ms for p in preds]))
    return report
