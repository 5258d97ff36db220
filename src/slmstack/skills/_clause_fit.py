"""How :class:`~slmstack.skills.clauses.ClauseFinder` fits.

The folds that tune its thresholds, one regression per clause type, the threshold that
maximises a type's F1, and the columns that say where a clause sits in its contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.data.splits import shuffled_groups
from slmstack.errors import DataError

GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)  # the thresholds a type may take
Fold = tuple[NDArray[np.int64], NDArray[np.int64]]


def folds(docs: Sequence[str], k: int, val_fraction: float, seed: int) -> list[Fold]:
    """(rows to fit on, rows to score) for each fit that tunes the thresholds.

    ``docs`` names each row's document ("" when unknown). ``k == 1``: one split, with
    ``val_fraction`` of the data held out. More: every row is held out once, by one of
    ``k`` fits (cross-fitting), so the thresholds and the per-type encoder choice are
    tuned on all the training data instead of a fifth of it, at ``k`` times the fitting
    cost.

    Whole documents are held out when every row names one and there are at least 5 (and
    at least ``k``): clauses of one contract share its names, dates and boiler-plate, so a
    clause-level split lets the thresholds see contracts the model was fitted on, which
    flatters the encoder's vectors most. Otherwise rows at random.

    Example:
        >>> [va.tolist() for _, va in folds(["a", "a", "b", "c", "d", "e"], 5, 0.2, 0)]
        [[3], [5], [4], [0, 1], [2]]
    """
    whole = len(set(docs)) >= max(5, k) and all(docs)
    if whole:
        units = shuffled_groups(docs, seed)
    else:
        units = [[int(i)] for i in np.random.default_rng(seed).permutation(len(docs))]
    if k == 1:
        share = val_fraction * len(units)  # documents round; rows round down
        chunks = [units[: max(1, round(share) if whole else int(share))]]
    else:
        chunks = [units[f::k] for f in range(min(k, len(units)))]
    out = []
    is_val = np.zeros(len(docs), dtype=bool)
    for chunk in chunks:
        is_val[:] = False
        for rows in chunk:
            is_val[rows] = True
        out.append((np.flatnonzero(~is_val), np.flatnonzero(is_val)))
    return out


def fit_per_type(
    x: Any, y: NDArray[np.int64], *, c: float, seed: int, only: NDArray[np.bool_] | None = None
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """One L2 logistic regression per column of ``y``.

    ``only``: just those columns; the others keep zero weights and a bias that never
    fires, as does a type with no example.
    """
    from sklearn.linear_model import LogisticRegression

    coef = np.zeros((y.shape[1], x.shape[1]), dtype=np.float32)
    bias = np.full(y.shape[1], -20.0, dtype=np.float32)
    for j in range(y.shape[1]):
        if (only is None or only[j]) and 0 < y[:, j].sum() < len(y):
            lr = LogisticRegression(
                C=c, solver="liblinear", dual=x.shape[0] < x.shape[1], random_state=seed,
                max_iter=1000,
            )  # fmt: skip
            lr.fit(x, y[:, j])
            coef[j], bias[j] = lr.coef_[0], lr.intercept_[0]
    return coef, bias


def proba(x: Any, coef: NDArray[np.float32], bias: NDArray[np.float32]) -> NDArray[np.float64]:
    """Each row's probability of each type under the regressions ``(coef, bias)``."""
    z = np.asarray(x @ coef.T.astype(np.float64)) + bias
    out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-z))
    return out


def best_threshold(p: NDArray[np.float64], y: NDArray[np.int64]) -> float:
    """The threshold of :data:`GRID` with the best F1 of ``p >= t`` against ``y``."""
    if y.sum() < 2:  # too few held-out examples to tune on: the calibrated default
        return 0.5
    f1 = [2 * ((p >= t) & (y == 1)).sum() / max(1, (p >= t).sum() + y.sum()) for t in GRID]
    return float(GRID[int(np.argmax(f1))])


POSITION_COLUMNS = 14


def position_block(
    positions: Sequence[tuple[int, int] | None], weight: float
) -> NDArray[np.float32]:
    """Where each clause sits in its contract, as ``POSITION_COLUMNS`` columns times ``weight``.

    One-hot "first", "second", "third" and "among the last three" clause, and the place
    ``index / count`` in ten equal bins. Document Name, Parties and Agreement Date open a
    contract, signatures close it; a clause read alone does not say so. An unknown position
    (``None``) is a row of zeros: the regression then decides on the text alone.

    Example:
        >>> position_block([(0, 3), None], 1.0)[:, [0, 3, 4]].tolist()
        [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    """
    out = np.zeros((len(positions), POSITION_COLUMNS), dtype=np.float32)
    for row, pos in enumerate(positions):
        if pos is None:
            continue
        index, count = pos
        if not 0 <= index < count:
            raise DataError(
                f"clause position {pos!r} is not (index, count) with 0 <= index < count; "
                "pass each clause's number in its contract (from 0) and the contract's "
                "clause count, or None when unknown"
            )
        if index < 3:
            out[row, index] = 1.0
        if index >= count - 3:
            out[row, 3] = 1.0
        out[row, 4 + min(9, 10 * index // count)] = 1.0
    return out * np.float32(weight)


def refuse_types_on_every_clause(types: Sequence[str], y: NDArray[np.int64]) -> None:
    """A type on every training clause has no negative example and could never be found."""
    on_all = [bool(y[:, j].all()) for j in range(y.shape[1])]
    always = [t for t, on in zip(types, on_all, strict=True) if on]
    if always:
        raise DataError(
            f"{', '.join(map(repr, always))} is on every one of the {len(y)} clauses, so "
            "nothing shows what is not it and it could never be found; add the contracts' "
            "other clauses (with no type, or other types)"
        )


def fit_words(vectorizer: Any, texts: Sequence[str], min_df: int) -> Any:
    """``vectorizer`` fitted on ``texts``, or an error that says how to get words."""
    try:
        return vectorizer.fit(list(texts))
    except ValueError as exc:  # scikit-learn: no n-gram is in min_df clauses
        raise DataError(
            f"{len(texts)} clauses are too few for the word features ({exc}): an n-gram is "
            f"kept when at least min_df={min_df} clauses have it. Give more clauses, or "
            "lower min_df (CLI: --set min_df=1)"
        ) from None


__all__ = [
    "GRID", "POSITION_COLUMNS", "Fold", "best_threshold", "fit_per_type", "fit_words", "folds",
    "position_block", "proba", "refuse_types_on_every_clause",
]  # fmt: skip
