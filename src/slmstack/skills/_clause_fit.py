"""How :class:`~slmstack.skills.clauses.ClauseFinder` fits.

The folds that tune its thresholds, one regression per clause type, the threshold that
maximises a type's F1, and the columns that say where a clause sits in its contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
        >>> position_block([(0, 4), None], 1.0)[:, [0, 3, 4]].tolist()
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


@dataclass(frozen=True)
class View:
    """The columns one candidate regression of a clause type reads."""

    cols: NDArray[np.int64]
    encoder: bool  # reads the encoder's vector
    position: bool  # reads the position columns


def views(vocab: int, dim: int, positions: int) -> list[View]:
    """The feature sets a clause type may choose, richest first (ties keep the earlier).

    Every column; then without the encoder's ``dim`` columns, without the ``positions``
    columns, and TF-IDF's ``vocab`` columns alone (those that exist). The columns run
    TF-IDF, encoder, position.
    """
    enc = np.arange(vocab, vocab + dim)
    pos = np.arange(vocab + dim, vocab + dim + positions)
    words = np.arange(vocab)
    out = [View(np.concatenate([words, enc, pos]), bool(dim), bool(positions))]
    if dim:
        out.append(View(np.concatenate([words, pos]), False, bool(positions)))
    if positions:
        out.append(View(np.concatenate([words, enc]), bool(dim), False))
    if dim and positions:
        out.append(View(words, False, False))
    return out


def choose_views(
    x: Any,
    y: NDArray[np.int64],
    folds_: Sequence[Fold],
    options: Sequence[View],
    *,
    c: float,
    seed: int,
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Per type, the view whose out-of-fold F1 is best (the first on ties).

    Returns the chosen view of each type, its threshold, the out-of-fold probabilities of
    the chosen views, and the rows they score (every row held out by some fold).
    """
    held = np.unique(np.concatenate([va for _, va in folds_]))
    scores = []
    for view in options:
        xv = x[:, view.cols]
        p = np.zeros(y.shape)
        for tr, va in folds_:
            p[va] = proba(xv[va], *fit_per_type(xv[tr], y[tr], c=c, seed=seed))
        scores.append(p[held])
    y_held = y[held]
    choice = np.zeros(y.shape[1], dtype=np.int64)
    thresholds = np.zeros(y.shape[1])
    for j in range(y.shape[1]):
        best = -1.0
        for v, p in enumerate(scores):
            t = best_threshold(p[:, j], y_held[:, j])
            f1 = f1_score(p[:, j] >= t, y_held[:, j])
            if f1 > best:
                best, choice[j], thresholds[j] = f1, v, t
    chosen = np.stack([scores[v][:, j] for j, v in enumerate(choice)], axis=1)
    return choice, thresholds, chosen, held


def fit_views(
    x: Any,
    y: NDArray[np.int64],
    options: Sequence[View],
    choice: NDArray[np.int64],
    *,
    c: float,
    seed: int,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Each type's regression on its chosen view, as weights over all of ``x``'s columns."""
    coef = np.zeros((y.shape[1], x.shape[1]), dtype=np.float32)
    bias = np.full(y.shape[1], -20.0, dtype=np.float32)
    for v, view in enumerate(options):
        only = choice == v
        if only.any():
            cv, bv = fit_per_type(x[:, view.cols], y, c=c, seed=seed, only=only)
            coef[np.ix_(np.flatnonzero(only), view.cols)] = cv[only]
            bias[only] = bv[only]
    return coef, bias


def f1_score(pred: NDArray[np.bool_], y: NDArray[np.int64]) -> float:
    """F1 of ``pred`` against ``y`` (1.0 when both are empty)."""
    tp = int((pred & (y == 1)).sum())
    wrong = int((pred & (y == 0)).sum()) + int((~pred & (y == 1)).sum())
    return 2 * tp / (2 * tp + wrong) if tp + wrong else 1.0


__all__ = [
    "GRID", "POSITION_COLUMNS", "Fold", "View", "best_threshold", "choose_views", "f1_score",
    "fit_per_type", "fit_views", "folds", "position_block", "proba", "views",
]  # fmt: skip
