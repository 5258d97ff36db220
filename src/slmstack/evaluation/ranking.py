"""Ranking metrics for recommenders: Recall@k, NDCG@k, and leave-one-out evaluation.

Leave-one-out, as in SASRec, BERT4Rec and UniSRec: each user's last item is the target,
the items before it are the history, and the model ranks the whole catalogue. With a
single target, Recall@k is 1 when the target is in the top k (a hit), and NDCG@k is
``1 / log2(rank + 1)`` for a target at 1-based ``rank <= k``, else 0.

Two ways in, so every method of a benchmark is scored by the same code:

* :func:`ranks_from_scores`: a score matrix over the catalogue (one row per case);
  items of the history can be excluded (what :class:`~slmstack.skills.Recommender`
  does) or kept (RecBole's sequential protocol, that published figures use).
* :func:`evaluate_recommender`: any skill's ``predict`` on history texts, reading the
  rank of the target from the top-k ``scores`` it returns.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.errors import ConfigError, DataError
from slmstack.evaluation.base import Predictor
from slmstack.evaluation.speed import measure_speed

__all__ = [
    "evaluate_recommender",
    "leave_one_out",
    "rank_metrics",
    "ranks_from_scores",
]

MISS = 0
"""The rank recorded when the target is not in the list (or was excluded)."""


def rank_metrics(
    ranks: Sequence[int] | NDArray[np.int64], ks: Sequence[int] = (10,)
) -> dict[str, float]:
    """Mean Recall@k and NDCG@k from 1-based target ranks (``0`` = not ranked).

    Example:
        >>> rank_metrics([1, 3, 0], ks=[1, 5])["recall@5"]
        0.6666666666666666
    """
    r = np.asarray(ranks, dtype=np.int64)
    if r.size == 0:
        raise DataError("no cases to evaluate; the data holds no user with a history and a target")
    out: dict[str, float] = {}
    for k in ks:
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        hit = (r >= 1) & (r <= k)
        gain = np.zeros(r.shape, dtype=np.float64)
        gain[hit] = 1.0 / np.log2(r[hit] + 1.0)
        out[f"recall@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(gain.mean())
    return out


def ranks_from_scores(
    scores: NDArray[np.floating[Any]],
    targets: Sequence[int],
    *,
    exclude: Sequence[Sequence[int]] | None = None,
) -> NDArray[np.int64]:
    """1-based rank of each row's target among all columns (ties count against it).

    Args:
        scores: ``(cases, catalogue)``; higher is better.
        targets: the target column of each row.
        exclude: columns to drop from each row's ranking (its history). A target that is
            excluded gets rank ``0`` (a miss), as it would in the skill's own output.
    """
    s = np.array(scores, dtype=np.float64, copy=True)
    t = np.asarray(targets, dtype=np.int64)
    if s.ndim != 2 or s.shape[0] != len(t):
        raise ConfigError(
            f"scores must be (cases, items) with one row per target; got "
            f"{s.shape} for {len(t)} targets"
        )
    excluded_target = np.zeros(len(t), dtype=bool)
    if exclude is not None:
        for row, cols in enumerate(exclude):
            if cols:
                idx = np.asarray(list(cols), dtype=np.int64)
                excluded_target[row] = bool(np.any(idx == t[row]))
                s[row, idx] = -np.inf
    own = s[np.arange(len(t)), t]
    # Ties rank the target last among equals: a constant scorer earns nothing.
    ranks: NDArray[np.int64] = np.asarray((s >= own[:, None]).sum(axis=1), dtype=np.int64)
    ranks[excluded_target | ~np.isfinite(own)] = MISS
    return ranks


def leave_one_out(histories: Sequence[Sequence[str]]) -> list[tuple[list[str], str]]:
    """``(history, target)`` per user: the last item is the target (users with >= 2 items)."""
    return [(list(h[:-1]), h[-1]) for h in histories if len(h) >= 2]


def evaluate_recommender(
    skill: Predictor,
    data: Path,
    *,
    ks: Sequence[int] = (5, 10, 20),
    single_queries: int = 50,
    **read_options: Any,
) -> dict[str, Any]:
    """Leave-one-out Recall@k and NDCG@k of ``skill`` on an interaction log, and speed.

    Each user's last item in ``data`` is the target and the rest the history, given to
    ``predict`` as item ids separated by spaces. The skill must list at least
    ``max(ks)`` items in ``scores``. ``read_options`` go to
    :func:`~slmstack.data.interactions.read_interactions` (column names); options of
    ``slmstack eval`` that mean nothing here (``text_column``, ...) are ignored.
    """
    from slmstack.data.interactions import format_history, read_interactions

    known = {"user_column", "item_column", "time_column"}
    options = {k: v for k, v in read_options.items() if k in known}
    cases = leave_one_out([h.items for h in read_interactions(data, **options)])
    if not cases:
        raise DataError(
            "no user has two or more items; leave-one-out needs a history and a target per user",
            path=data,
        )
    catalogue = set(getattr(skill, "items_", ()))
    if catalogue:
        outside = sorted({i for h, t in cases for i in (*h, t)} - catalogue)
        if outside and len(outside) == len({i for h, t in cases for i in (*h, t)}):
            raise DataError(
                f"none of the log's items is in the skill's catalogue (for example "
                f"{outside[:3]}); evaluate on a log of the items it was trained with",
                path=data,
            )
    texts = [format_history(h) for h, _ in cases]
    start = time.perf_counter()
    preds = skill.predict(texts)
    seconds = time.perf_counter() - start
    answered = [p for p in preds if p.abstained is None]
    if not answered:
        reasons = sorted({str(p.abstained) for p in preds})
        raise DataError(
            f"the skill abstained on every one of the {len(preds)} histories ({', '.join(reasons)}"
            "); check that the log's item ids are the skill's",
            path=data,
        )
    # The deepest list, not the shortest: a small catalogue can run out of unseen items.
    depth = max(len(p.scores) for p in answered)
    if depth < max(ks):
        raise ConfigError(
            f"the skill lists {depth} items per prediction but Recall@{max(ks)} needs "
            f"{max(ks)}; raise its top_k (--set top_k={max(ks)})."
        )
    ranks = []
    for (_, target), p in zip(cases, preds, strict=True):
        listed = [s.label for s in p.scores]
        ranks.append(listed.index(target) + 1 if target in listed else MISS)
    report: dict[str, Any] = {
        "n": len(cases),
        **rank_metrics(ranks, ks),
        "abstained": sum(p.abstained is not None for p in preds),
        "target_in_history": sum(t in h for h, t in cases),
        # a target the catalogue lacks can never be found: it counts as a miss
        "target_not_in_catalogue": sum(t not in catalogue for _, t in cases) if catalogue else 0,
        "predict_seconds": seconds,
    }
    report["speed"] = measure_speed(skill.predict, texts[:2000], single_queries=single_queries)
    return report
