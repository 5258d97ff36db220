"""Calibration of the FAQ answerer: held-out features, the confidence model, the threshold.

Plain functions over the index and encoder, so that :mod:`slmstack.skills.faq` keeps only
the skill's life cycle. See :mod:`slmstack.retrieval.calibration` for the method.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.errors import DataError
from slmstack.retrieval.base import TextEncoder
from slmstack.retrieval.calibration import (
    MatchCalibrator,
    choose_threshold,
    fit_match_calibrator,
    leave_one_out_set,
    top_two,
)
from slmstack.retrieval.index import VectorIndex
from slmstack.training.calibration import expected_calibration_error

Calibration = Sequence[tuple[str, str | None]]
"""Held-out ``(query, entry id or None)``; ``None`` marks an out-of-scope query."""


@dataclass(frozen=True)
class Calibrated:
    """What calibration fitted: the confidence model, the threshold and held-out metrics."""

    calibrator: MatchCalibrator
    threshold: float
    metrics: dict[str, Any]


def calibrate(
    index: VectorIndex,
    encoder: TextEncoder,
    calibration: Calibration | None,
    *,
    entry_ids: Collection[str],
    threshold: float | None,
    wrong_answer_cost: float,
    max_wrong_abstain: float | None,
    max_calibration: int,
    seed: int,
) -> Calibrated:
    """Fit the confidence on held-out queries (or leave-one-out) and choose the threshold.

    A fixed ``threshold`` is kept as given; ``None`` takes the one that minimises
    ``wrong_answer_cost × wrong answers + wrong abstentions`` on the held-out queries.
    """
    if calibration is not None:
        sim, margin, correct = held_out_features(index, encoder, calibration, entry_ids)
        source = f"{len(correct)} held-out queries"
    else:
        sim, margin, correct = leave_one_out_set(index, max_calibration, seed)
        source = "leave-one-out over the KB's phrasings"
    calibrator = fit_match_calibrator(sim, margin, correct)
    conf = calibrator(sim, margin)
    choice = choose_threshold(
        conf, correct, wrong_answer_cost=wrong_answer_cost, max_wrong_abstain=max_wrong_abstain
    )
    chosen = float(threshold if threshold is not None else choice.threshold)
    answered = conf >= chosen
    probs = np.stack([1 - conf, conf], axis=1)
    metrics: dict[str, Any] = {
        "calibration_source": source,
        "calibration_queries": len(correct),
        "calibration_right": int(correct.sum()),
        "threshold": chosen,
        "threshold_chosen_on_held_out": threshold is None,
        "held_out_answered_accuracy": float(correct[answered].mean()) if answered.any() else 0.0,
        "held_out_abstain_rate": float(1 - answered.mean()),
        "held_out_ece": float(expected_calibration_error(probs, correct.astype(np.int64))),
    }
    return Calibrated(calibrator, chosen, metrics)


def held_out_features(
    index: VectorIndex,
    encoder: TextEncoder,
    calibration: Calibration,
    entry_ids: Collection[str],
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_]]:
    """(similarity, margin, right) of each held-out query against the index."""
    queries, expected = [], []
    for i, item in enumerate(calibration):
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)):
            raise DataError(
                f"calibration item #{i} must be (query, entry id or None), got {item!r}"
            )
        query, target = item
        if target is not None and target not in entry_ids:
            raise DataError(
                f"calibration item #{i} ({query!r}) expects entry {target!r}, which is not "
                "in the knowledge base; use an existing id, or None for out-of-scope"
            )
        queries.append(query)
        expected.append(target)
    best, sim, margin = top_two(index.key_scores(encoder.encode(queries).vectors))
    keys = index.keys
    correct = np.array([keys[b] == t for b, t in zip(best, expected, strict=True)])
    return sim, margin, correct
