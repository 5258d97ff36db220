"""Turn retrieval similarities into a calibrated probability that the match is right.

A raw cosine is not a probability: 0.62 may be a sure match in one knowledge base and
noise in another. :class:`MatchCalibrator` fits ``P(top answer is right)`` from two
features of each held-out query, the best similarity and its margin over the best
*other* entry (a near-tie between two entries is a sign of ambiguity), with a logistic
regression (Platt scaling). Held-out queries whose right answer is "none" (out of
scope) count as wrong whatever they match, so the probability also covers abstention.
Neither weight may be negative (a closer match never lowers the confidence): a feature
the fit weighs negatively, as a few held-out queries can make it, is left out.

The abstention threshold is then the confidence that minimises, on the same held-out
queries, ``wrong_answer_cost × wrong answers + wrong abstentions``: with cost 1 both
errors weigh the same; a higher cost trades more escalations for fewer wrong answers.
``max_wrong_abstain`` can bound the share of right answers withheld, for when the
held-out out-of-scope queries are harder than real traffic (leave-one-out calibration).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.errors import DataError
from slmstack.retrieval.index import VectorIndex

_NO_SECOND = 0.0  # with one key only, the margin is taken against an unrelated text (cos 0)


Features = tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.float32]]


def top_two(scores: NDArray[np.float32]) -> Features:
    """Best key column, its score and the margin over the runner-up, per row of ``scores``."""
    best = scores.argmax(axis=1)
    s1 = scores[np.arange(len(scores)), best]
    if scores.shape[1] > 1:
        s2 = np.partition(scores, -2, axis=1)[:, -2]
        s2 = np.where(np.isfinite(s2), s2, _NO_SECOND)
    else:
        s2 = np.full(len(scores), _NO_SECOND, dtype=np.float32)
    return best.astype(np.int64), s1.astype(np.float32), (s1 - s2).astype(np.float32)


@dataclass(frozen=True)
class MatchCalibrator:
    """``P(right) = sigmoid(w_sim · similarity + w_margin · margin + b)``."""

    w_sim: float
    w_margin: float
    bias: float

    def __call__(
        self, sim: NDArray[np.float32], margin: NDArray[np.float32]
    ) -> NDArray[np.float64]:
        """Calibrated probabilities for arrays of similarities and margins."""
        z = self.w_sim * sim.astype(np.float64) + self.w_margin * margin.astype(np.float64)
        out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-(z + self.bias)))
        return out

    def to_dict(self) -> dict[str, float]:
        """JSON form."""
        return {"w_sim": self.w_sim, "w_margin": self.w_margin, "bias": self.bias}

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> MatchCalibrator:
        """Inverse of :meth:`to_dict`."""
        return cls(float(obj["w_sim"]), float(obj["w_margin"]), float(obj["bias"]))


def fit_match_calibrator(
    sim: NDArray[np.float32], margin: NDArray[np.float32], correct: NDArray[np.bool_]
) -> MatchCalibrator:
    """Platt scaling on (similarity, margin) → right/wrong."""
    from sklearn.linear_model import LogisticRegression

    n_right, n_wrong = int(correct.sum()), int((~correct).sum())
    if n_right < 2 or n_wrong < 2:
        raise DataError(
            f"calibration needs at least 2 right and 2 wrong held-out matches; got {n_right} "
            f"right and {n_wrong} wrong. Pass calibration queries that include some the KB "
            "cannot answer (right answer None), and some it can."
        )
    x = np.stack([sim, margin], axis=1).astype(np.float64)
    y = correct.astype(int)
    # Weak regularisation: only 3 parameters, and similarities live in a narrow range.
    lr = LogisticRegression(C=100.0, max_iter=1000).fit(x, y)
    w = lr.coef_[0].copy()
    if (w < 0).any():
        # A closer match must never lower the confidence. On a few held-out queries the
        # fit can give a feature a negative weight (w_sim = -0.05 on a six-entry German
        # KB read by an English encoder): that feature is left out, the other refitted.
        keep = np.flatnonzero(w >= 0)
        if len(keep):
            lr = LogisticRegression(C=100.0, max_iter=1000).fit(x[:, keep], y)
            w = np.zeros(2)
            w[keep] = lr.coef_[0]
        if (w < 0).any() or not len(keep):
            raise DataError(
                "the held-out queries give neither a higher similarity nor a larger margin "
                f"to right matches than to wrong ones (n={len(y)}, {n_right} right); check "
                "that each calibration query names the entry that answers it (None when "
                "none does), or add calibration queries or alternate phrasings"
            )
    return MatchCalibrator(float(w[0]), float(w[1]), float(lr.intercept_[0]))


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold and what it did on the held-out queries."""

    threshold: float
    answered_accuracy: float
    abstain_rate: float
    wrong_answer_rate: float
    wrong_abstain_rate: float


def choose_threshold(
    confidence: NDArray[np.float64],
    correct: NDArray[np.bool_],
    *,
    wrong_answer_cost: float,
    max_wrong_abstain: float | None = None,
) -> ThresholdChoice:
    """The threshold minimising ``cost × wrong answers + wrong abstentions`` on held-out data.

    A query is answered when its confidence is at least the threshold. Among equally
    good thresholds the middle one is taken, away from the edges of the data. With
    ``max_wrong_abstain``, only thresholds that withhold at most that share of the
    answers that would have been right are considered (a service-level bound on
    needless escalations).
    """
    order = np.argsort(confidence, kind="stable")
    conf, ok = confidence[order], correct[order]
    n = len(conf)
    # Cut i: abstain on conf[:i], answer conf[i:]. Costs for every i at once.
    right_abstained = np.concatenate([[0], np.cumsum(ok)])
    wrong_answered = np.concatenate([[0], np.cumsum((~ok)[::-1])])[::-1]
    cost = wrong_answer_cost * wrong_answered + right_abstained
    # Only cut between distinct values, so that the threshold separates the two sides.
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = conf[1:] > conf[:-1]
    if max_wrong_abstain is not None:
        valid &= right_abstained <= max_wrong_abstain * max(1, int(ok.sum()))
    best_cost = cost[valid].min()
    best = np.flatnonzero(valid & (cost == best_cost))
    cut = int(best[len(best) // 2])
    if cut == 0:
        threshold = float(conf[0]) / 2
    elif cut == n:
        threshold = float(min(1.0, (conf[-1] + 1.0) / 2))
    else:
        threshold = float((conf[cut - 1] + conf[cut]) / 2)
    answered = conf >= threshold
    n_answered = int(answered.sum())
    return ThresholdChoice(
        threshold=threshold,
        answered_accuracy=float(ok[answered].mean()) if n_answered else 0.0,
        abstain_rate=float(1 - n_answered / n),
        wrong_answer_rate=float((answered & ~ok).sum() / n),
        wrong_abstain_rate=float((~answered & ok).sum() / n),
    )


def leave_one_out_features(
    index: VectorIndex,
    vectors: NDArray[np.float32],
    rows: Sequence[int],
    *,
    drop_entry: bool,
) -> Features:
    """Score index rows as queries against the index without themselves.

    With ``drop_entry`` every row of the query's key is hidden too, so the query asks
    for something the KB does not hold: a realistic near-miss out-of-scope query.
    """
    sims = index.similarities(vectors).copy()
    for i, row in enumerate(rows):
        hidden = index.rows_of(index.key_of(row)) if drop_entry else [row]
        sims[i, hidden] = -np.inf
    return top_two(index.group_max(sims))


def leave_one_out_set(
    index: VectorIndex, max_queries: int, seed: int
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_]]:
    """Held-out (similarity, margin, right) built from the index alone.

    Positives: each alternate phrasing asked against the index without that row (right
    when its own entry still wins). Negatives: any phrasing asked with its whole entry
    hidden, a near-miss out-of-scope query. At most ``max_queries`` in all, half each,
    sampled with ``seed``.
    """
    rng = np.random.default_rng(seed)
    alternates = [r for r in range(len(index)) if len(index.rows_of(index.key_of(r))) > 1]
    misses = list(range(len(index)))
    if len(index.keys) < 2 or len(alternates) < 2:
        raise DataError(
            "cannot calibrate from this knowledge base alone: leave-one-out needs at least "
            f"2 entries and 2 alternate phrasings (it has {len(index.keys)} entries and "
            f"{len(alternates)} phrasings with an alternate). Add alternate phrasings "
            "(an 'alternates' column, or rows sharing an id), or pass calibration=[(query, "
            "entry id or None), ...] (CLI: --calibration FILE, a CSV of text,label: a query "
            "and its entry's id, or oos when no entry answers it; the ids "
            f"here are {', '.join(repr(k) for k in list(index.keys)[:5])}"
            f"{', ...' if len(index.keys) > 5 else ''})."
        )
    half = max(1, max_queries // 2)
    if len(alternates) > half:
        alternates = sorted(rng.choice(alternates, half, replace=False).tolist())
    if len(misses) > half:
        misses = sorted(rng.choice(misses, half, replace=False).tolist())
    best_p, sim_p, margin_p = leave_one_out_features(
        index, index.row_vectors(alternates), alternates, drop_entry=False
    )
    _, sim_n, margin_n = leave_one_out_features(
        index, index.row_vectors(misses), misses, drop_entry=True
    )
    keys = index.keys
    right = np.array([keys[b] == index.key_of(r) for b, r in zip(best_p, alternates, strict=True)])
    return (
        np.concatenate([sim_p, sim_n]),
        np.concatenate([margin_p, margin_n]),
        np.concatenate([right, np.zeros(len(misses), dtype=bool)]),
    )
