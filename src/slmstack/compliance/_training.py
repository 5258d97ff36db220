"""Fitting the checker's models with out-of-fold features and scores."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from slmstack.compliance._nli import (
    VERDICTS,
    Array,
    Head,
    Hypothesis,
    Memory,
    Models,
    Pair,
    Unit,
    fit_linear,
    fit_span_models,
    head_features,
    memories,
    shift,
)
from slmstack.compliance.metrics import Judged, nli_report
from slmstack.errors import DataError

# Contradiction biases tried by choose_bias (log-odds added to the contradiction logit).
BIASES = tuple(float(b) for b in np.round(np.arange(-1.0, 2.01, 0.25), 2))

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
    per_hypothesis: bool = True,
    balanced: bool = True,
    bias: float | None = 0.0,
) -> tuple[Models, dict[str, Memory]]:
    """Span models on every pair; the head on their out-of-fold scores.

    Documents are dealt into ``folds`` folds. A pair's exemplar features come from the
    evidence of the other folds only (its own evidence would be its nearest exemplar);
    the head's rows for a fold are scored by span models fitted on the other folds.
    The head has a block of features per training hypothesis when ``per_hypothesis``,
    and ``balanced`` class weights (contradiction is the rare verdict: without them the
    head predicts it only where it is the majority). ``bias`` is added to its
    contradiction logit; ``None`` chooses it with :func:`choose_bias` on these rows.
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

    known = tuple(sorted({p.hypothesis for p in pairs})) if per_hypothesis else ()
    rows: list[Array] = []
    ys: list[int] = []
    held_pairs: list[Pair] = []
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
            rows.append(head_features(p_ev, p_c, hyp(p), known))
            ys.append(p.verdict)
            held_pairs.append(p)
    if len(set(ys)) < len(VERDICTS):
        missing = [VERDICTS[i] for i in range(len(VERDICTS)) if i not in set(ys)]
        raise DataError(
            f"the training pairs have no {', '.join(missing)} verdict; the checker needs "
            "entailed, contradicted and not-mentioned examples. Add documents that have them."
        )
    spans = fit_span_models(units, pairs, hyp, c=c, negatives=negatives, min_own=min_own, seed=seed)
    x, y = np.vstack(rows), np.array(ys, dtype=np.int64)
    if bias is None:
        bias = choose_bias(x, held_pairs, c=head_c, balanced=balanced, folds=folds, seed=seed)
    head = Head(fit_linear(x, y, c=head_c, balanced=balanced, seed=seed), known, bias)
    return Models(spans, head), memories(units, pairs)


def choose_bias(
    x: Array, pairs: Sequence[Pair], *, c: float, balanced: bool, folds: int, seed: int
) -> float:
    """The contradiction bias that maximises accuracy + Contradiction F1 out of fold.

    The head is cross-validated over the documents of ``pairs`` (the rows of ``x``):
    each fold's pairs are scored by a head fitted on the other folds, and each bias in
    ``BIASES`` is applied to those out-of-fold probabilities. The sum of accuracy and
    Contradiction F1 (both macro over hypotheses, as :func:`nli_report`) is the
    ContractNLI benchmark's criterion; ties go to the bias closest to 0.
    """
    y = np.array([p.verdict for p in pairs], dtype=np.int64)
    docs = np.array([p.unit for p in pairs])
    order = np.random.default_rng(seed + 1).permutation(np.unique(docs))
    fold_of = {int(d): i % folds for i, d in enumerate(order)}
    fold = np.array([fold_of[int(d)] for d in docs])
    probs = np.zeros((len(y), len(VERDICTS)))
    for f in range(folds):
        inside = fold != f
        if len(set(y[inside].tolist())) < len(VERDICTS):
            raise DataError(
                "too few documents to choose the contradiction bias: a fold of the training "
                "documents has no example of a verdict; add documents or set "
                "contradiction_bias to a number (0 leaves the head as it is)"
            )
        head = fit_linear(x[inside], y[inside], c=c, balanced=balanced, seed=seed)
        probs[~inside] = head.scores(x[~inside])

    def score(b: float) -> float:
        pred = shift(probs, b).argmax(axis=1)
        report = nli_report([Judged(p.hypothesis, VERDICTS[p.verdict], VERDICTS[int(k)])
                             for p, k in zip(pairs, pred, strict=True)])  # fmt: skip
        return report["accuracy"] + report["f1_contradicted"]

    return max(sorted(BIASES, key=abs), key=score)
