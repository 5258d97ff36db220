"""The peers ``bench/recommend.py`` compares with: popularity, item-to-item co-occurrence
kNN, text kNN over item vectors, and implicit ALS. Each returns a scorer: cases (history,
target) in, one score per item out. ``split`` is ``recommend.Split`` (its ``train``
sequences and ``items``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse


def popularity(split: Any, cases) -> np.ndarray:
    counts = np.bincount([i for s in split.train for i in s], minlength=len(split.items))
    return np.tile(counts.astype(np.float32), (len(cases), 1))


def user_item(rows: list[list[int]], n_items: int) -> sparse.csr_matrix:
    data, r, c = [], [], []
    for u, seq in enumerate(rows):
        for i in set(seq):
            r.append(u), c.append(i), data.append(1.0)
    return sparse.csr_matrix((data, (r, c)), shape=(len(rows), n_items), dtype=np.float32)


def item_knn(split: Any, neighbours: int | None):
    x = user_item(split.train, len(split.items))
    co = (x.T @ x).toarray().astype(np.float32)
    deg = np.sqrt(np.diag(co)) + 1e-9
    sim = co / deg[:, None] / deg[None, :]
    np.fill_diagonal(sim, 0.0)
    if neighbours is not None:
        cut = np.partition(sim, -neighbours, axis=1)[:, -neighbours][:, None]
        sim = np.where(sim >= cut, sim, 0.0)

    def score(cases):
        h = user_item([h for h, _ in cases], len(split.items))
        return np.asarray(h @ sim)

    return score


def text_knn(vectors: np.ndarray, mode: str):
    def score(cases):
        if mode == "last":
            users = vectors[[h[-1] for h, _ in cases]]
        else:
            users = np.stack([vectors[h].mean(axis=0) for h, _ in cases])
        return users @ vectors.T

    return score


def als(split: Any, factors: int, reg: float, alpha: float):
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=factors,
        regularization=reg,
        alpha=alpha,
        iterations=20,
        random_state=0,
        num_threads=2,
    )
    model.fit(user_item(split.train, len(split.items)), show_progress=False)
    item_f = np.asarray(model.item_factors)

    def score(cases):
        h = user_item([h for h, _ in cases], len(split.items))
        users = np.asarray(model.recalculate_user(np.arange(h.shape[0]), h))
        return users @ item_f.T

    return score
