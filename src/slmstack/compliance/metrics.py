"""ContractNLI measures: NLI accuracy, F1 of entailment and contradiction, evidence mAP.

As in Koreeda & Manning (2021), each measure is computed per hypothesis over the
documents and then averaged over the hypotheses ("macro over labels, micro over
documents"), so that common hypotheses do not hide rare ones; the micro average over
all pairs is reported beside it. As in their evaluation code, the F1 of a verdict is
undefined for a hypothesis that no document has that gold verdict for, and such
hypotheses are left out of that F1's average (counting them as 0 would cap
Contradiction F1 at 10/17 on ContractNLI test, where 7 hypotheses are never
contradicted; with this rule the per-hypothesis majority vote scores the paper's 0.083).

Evidence mAP is the mean, over pairs whose verdict is entailed or contradicted, of the
average precision of the spans ranked by evidence score against the gold evidence spans
(then averaged per hypothesis as above). The paper's code instead pools the spans of all
documents of a hypothesis before computing one average precision per hypothesis.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Judged:
    """One (document, hypothesis) pair: gold and predicted verdict, span scores."""

    hypothesis: str
    gold: str
    predicted: str
    span_scores: Sequence[float] = ()  # one per gold-annotated span of the document
    evidence: frozenset[int] = frozenset()


def average_precision(scores: Sequence[float] | NDArray[np.float64], gold: frozenset[int]) -> float:
    """Average precision of spans ranked by ``scores`` (ties by position) against ``gold``."""
    if not gold:
        return 0.0
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits, total = 0, 0.0
    for rank, idx in enumerate(order, start=1):
        if int(idx) in gold:
            hits += 1
            total += hits / rank
    return total / len(gold)


def _f1(gold: Sequence[str], pred: Sequence[str], label: str) -> float | None:
    """F1 of ``label``; None (undefined) when no gold item has it."""
    if label not in gold:
        return None
    tp = sum(g == p == label for g, p in zip(gold, pred, strict=True))
    fp = sum(p == label != g for g, p in zip(gold, pred, strict=True))
    fn = sum(g == label != p for g, p in zip(gold, pred, strict=True))
    return 2 * tp / (2 * tp + fp + fn)


def _scores(items: Sequence[Judged]) -> dict[str, float]:
    gold = [j.gold for j in items]
    pred = [j.predicted for j in items]
    aps = [average_precision(j.span_scores, j.evidence) for j in items if j.evidence]
    out = {"accuracy": float(np.mean([g == p for g, p in zip(gold, pred, strict=True)]))}
    for label in ("entailed", "contradicted"):
        f1 = _f1(gold, pred, label)
        if f1 is not None:
            out[f"f1_{label}"] = f1
    if aps:
        out["evidence_map"] = float(np.mean(aps))
    return out


def nli_report(items: Sequence[Judged]) -> dict[str, float]:
    """Macro-over-hypotheses measures (the paper's), and ``micro_*`` over all pairs.

    A measure that is undefined for every hypothesis (no gold contradiction at all, or
    no gold evidence) is left out of the result rather than reported as 0.
    """
    by_h: dict[str, list[Judged]] = defaultdict(list)
    for j in items:
        by_h[j.hypothesis].append(j)
    per = [_scores(group) for group in by_h.values()]
    out: dict[str, float] = {}
    for key in ("accuracy", "f1_entailed", "f1_contradicted", "evidence_map"):
        values = [p[key] for p in per if key in p]
        if values:
            out[key] = float(np.mean(values))
    out |= {f"micro_{k}": v for k, v in _scores(items).items()}
    out["pairs"] = float(len(items))
    return out


def threshold_for(
    confidence: Sequence[float], correct: Sequence[bool], target: float
) -> tuple[float, float]:
    """The lowest confidence threshold whose accepted answers are ``target`` accurate.

    Returns ``(threshold, share of answers accepted)``; a threshold above every
    confidence (all go to review) when no threshold reaches the target.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    for t in np.round(np.arange(0.3, 1.0, 0.01), 2):
        keep = conf >= t
        if keep.sum() >= max(5, 0.05 * len(conf)) and ok[keep].mean() >= target:
            return float(t), float(keep.mean())
    return 1.0, 0.0


def flag_counts(flags: Sequence[str]) -> Mapping[str, int]:
    """How many of each flag."""
    out = dict.fromkeys(("ok", "missing", "violated", "needs_review"), 0)
    for f in flags:
        out[f] += 1
    return out
