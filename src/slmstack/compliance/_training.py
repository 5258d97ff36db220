"""Fitting the checker's models with out-of-fold features and scores."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from slmstack.compliance._nli import (
    VERDICTS,
    Array,
    Hypothesis,
    Memory,
    Models,
    Pair,
    Unit,
    fit_linear,
    fit_span_models,
    head_features,
    memories,
)
from slmstack.errors import DataError

MakeHypothesis = Callable[[str, Mapping[str, Memory]], Hypothesis]


def make_pairs(labels: Sequence[Mapping[str, tuple[str, frozenset[int]]]]) -> list[Pair]:
    """Training pairs from each document's ``hypothesis → (verdict, evidence)``."""
    return [
        Pair(i, h, VERDICTS.index(verdict), evidence)  # type: ignore[arg-type]
        for i, doc in enumerate(labels)
        for h, (verdict, evidence) in sorted(doc.items())
    ]


def fit_models(
    units: Sequence[Unit],
    pairs: Sequence[Pair],
    hypothesis: MakeHypothesis,
    *,
    c: float,
    head_c: float,
    folds: int,
    negatives: int,
    min_own: int,
    seed: int,
) -> tuple[Models, dict[str, Memory]]:
    """Span models on every pair; the head on their out-of-fold scores.

    Documents are dealt into ``folds`` folds. A pair's exemplar features come from the
    evidence of the other folds only (its own evidence would be its nearest exemplar);
    the head's rows for a fold are scored by span models fitted on the other folds.
    Returns the models and the evidence memory of all pairs (what prediction compares
    new documents with).
    """
    order = np.random.default_rng(seed).permutation(len(units))
    fold_of = {int(doc): i % folds for i, doc in enumerate(order)}
    memory = {f: memories(units, [p for p in pairs if fold_of[p.unit] != f]) for f in range(folds)}
    cache: dict[tuple[int, str], Hypothesis] = {}

    def hyp(p: Pair) -> Hypothesis:
        key = (fold_of[p.unit], p.hypothesis)
        if key not in cache:
            cache[key] = hypothesis(p.hypothesis, memory[key[0]])
        return cache[key]

    rows: list[Array] = []
    ys: list[int] = []
    for f in range(folds):
        inside = [p for p in pairs if fold_of[p.unit] != f]
        held = [p for p in pairs if fold_of[p.unit] == f]
        if not inside or not held:
            continue
        fold_models = fit_span_models(
            units, inside, hyp, c=c, negatives=negatives, min_own=min_own, seed=seed
        )
        for p in held:
            p_ev, p_c = fold_models.scores(units[p.unit], hyp(p))
            rows.append(head_features(p_ev, p_c, hyp(p)))
            ys.append(p.verdict)
    if len(set(ys)) < len(VERDICTS):
        missing = [VERDICTS[i] for i in range(len(VERDICTS)) if i not in set(ys)]
        raise DataError(
            f"the training pairs have no {', '.join(missing)} verdict; the checker needs "
            "entailed, contradicted and not-mentioned examples. Add documents that have them."
        )
    spans = fit_span_models(units, pairs, hyp, c=c, negatives=negatives, min_own=min_own, seed=seed)
    y = np.array(ys, dtype=np.int64)
    head = fit_linear(np.vstack(rows), y, c=head_c, balanced=False, seed=seed)
    return Models(spans, head), memories(units, pairs)
