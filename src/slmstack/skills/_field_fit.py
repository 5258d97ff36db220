"""Fitting the field extractor's scorers: one per field, plus a span scorer per text field.

Kept apart from :mod:`.fields` (the skill's API, persistence and decoding) so that each
file reads on its own. Everything here is plain numpy / scikit-learn on feature
matrices already built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.data.fields import FieldExample
from slmstack.data.splits import shuffled_groups
from slmstack.skills._field_features import Candidate, Line, hash_words
from slmstack.skills._field_spans import fold_of, span_features, spans

Weights = tuple[NDArray[np.float32], float]
SPAN_FOLDS = 3  # folds of the out-of-fold line probabilities the span scorer learns from


def fit_logistic(x: Any, y: NDArray[np.int_], c: float, seed: int) -> Weights:
    """L2 logistic regression weights and bias (float32, as saved).

    When every row is positive (one date per document, say) there is nothing to rank:
    zero weights and the Laplace estimate (n + 1) / (n + 2) as the bias.
    """
    from sklearn.linear_model import LogisticRegression

    if y.sum() == len(y):
        return np.zeros(x.shape[1], np.float32), float(np.float32(np.log1p(len(y))))
    if y.sum() == 0:  # the caller reports a field nothing can be learned for
        return np.zeros(x.shape[1], np.float32), float(np.float32(-np.log1p(len(y))))
    # The dual problem is far faster when rows are fewer than hashed features.
    lr = LogisticRegression(
        C=c, solver="liblinear", dual=x.shape[0] < x.shape[1], random_state=seed, max_iter=1000
    )
    lr.fit(x, y)
    return lr.coef_[0].astype(np.float32), float(np.float32(lr.intercept_[0]))


def probabilities(x: Any, w: Weights) -> NDArray[np.float64]:
    """The logistic scorer's probability of each row of ``x``."""
    coef, bias = w
    z = np.asarray(x @ coef.astype(np.float64), dtype=np.float64) + bias
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def span_matrix(
    per_doc: Sequence[Sequence[Candidate]],
    docs: Sequence[Sequence[Line]],
    line_p: Sequence[NDArray[np.float64]],
    max_lines: int,
) -> tuple[Any, list[list[Candidate]]]:
    """Span candidates of each document and their feature matrix (dense + hashed words)."""
    from scipy import sparse

    runs = [spans(cands, max_lines) for cands in per_doc]
    dense, words = [], []
    for r, lines, p in zip(runs, docs, line_p, strict=True):
        d, w = span_features(r, lines, p, max_lines)
        dense.append(d)
        words += w
    x = sparse.hstack([sparse.csr_matrix(np.concatenate(dense)), hash_words(words)])
    return x.tocsr(), runs


def out_of_fold_probabilities(
    x: Any,
    y: NDArray[np.int_],
    bounds: NDArray[np.intp],
    groups: Sequence[str],
    c: float,
    seed: int,
) -> list[NDArray[np.float64]] | None:
    """Each document's line probabilities from a line scorer that never saw its group.

    ``bounds[d]:bounds[d + 1]`` are document ``d``'s rows of ``x``. ``None`` when there
    are fewer groups than :data:`SPAN_FOLDS`.
    """
    fold = fold_of(groups, SPAN_FOLDS, seed)
    if fold is None:
        return None
    row_fold = np.repeat(fold, np.diff(bounds))
    p = np.zeros(x.shape[0])
    for f in range(SPAN_FOLDS):
        train, held = row_fold != f, row_fold == f
        p[held] = probabilities(x[held], fit_logistic(x[train], y[train], c, seed))
    return [p[bounds[d] : bounds[d + 1]] for d in range(len(bounds) - 1)]


def tuning_folds(groups: Sequence[str], k: int, val_fraction: float, seed: int) -> list[list[int]]:
    """The documents each tuning fit holds out: whole groups, in a seeded random order.

    ``k == 1``: one fold, groups taken until ``val_fraction`` of the documents are held
    out; none when that leaves fewer than 1 held out or 2 to fit on. ``k > 1``: the groups
    dealt into ``k`` folds (as many as there are groups, when fewer), so that every
    document is held out once; none with fewer than 2 groups.

    Example:
        >>> tuning_folds(["a", "a", "b", "c"], 2, 0.2, seed=0)
        [[2, 3], [0, 1]]
    """
    if k > 1:
        fold = fold_of(groups, min(k, len(set(groups))), seed)
        if fold is None or len(set(groups)) < 2:
            return []
        return [np.flatnonzero(fold == f).tolist() for f in range(int(fold.max()) + 1)]
    n_val = int(val_fraction * len(groups))
    if n_val < 1 or len(groups) - n_val < 2:
        return []
    out: list[int] = []
    for rows in shuffled_groups(groups, seed):
        if len(out) >= n_val:
            break
        out += rows
    return [sorted(out)]


def groups_of(examples: Sequence[FieldExample], group_by: str | None) -> list[str]:
    """Each document's group: its ``group_by`` value (letters and digits, case-folded).

    A document without one (or with ``group_by`` unset) is a group of its own.
    """
    out = []
    for i, ex in enumerate(examples):
        value = ex.values.get(group_by) if group_by else None
        key = "".join(ch for ch in str(value).casefold() if ch.isalnum()) if value else ""
        out.append(key or f"#{i}")
    return out
