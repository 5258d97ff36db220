"""Calibration of the FAQ answerer: held-out features, the confidence model, the threshold.

Plain functions over the index and encoder, so that :mod:`slmstack.skills.faq` keeps only
the skill's life cycle. See :mod:`slmstack.retrieval.calibration` for the method.

The threshold that minimises the held-out errors is noisy on a small held-out set: a
regional FAQ of six entries has about 30 leave-one-out queries, and a few right answers at
low confidence pulled its threshold to 0.23, so near-misses were answered. Below
:data:`MIN_HELD_OUT` queries the threshold is therefore at least ``c / (1 + c)`` with
``c = wrong_answer_cost``: the confidence from which answering costs less than abstaining
if the confidence is a calibrated probability (0.5 at cost 1). The floor only ever
raises the threshold, also over ``max_wrong_abstain`` (whose share of a few right answers
is not measurable), and a knowledge base or calibration set of hundreds of queries
keeps the cost minimum as before (``bench/faq.py``: 533 held-out queries, or 2,000
leave-one-out). ``metrics["threshold_rule"]`` says which rule chose it.
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
    ThresholdChoice,
    choose_threshold,
    fit_match_calibrator,
    leave_one_out_set,
    top_two,
)
from slmstack.retrieval.index import VectorIndex
from slmstack.training.calibration import expected_calibration_error

MIN_HELD_OUT = 100  # held-out queries below which the cost minimum may not go under the floor

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
    ``wrong_answer_cost × wrong answers + wrong abstentions`` on the held-out queries, at
    least ``c / (1 + c)`` (``c = wrong_answer_cost``) when they are fewer than
    :data:`MIN_HELD_OUT`.
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
    if threshold is not None:
        chosen, rule = float(threshold), "fixed by the threshold parameter"
    else:
        chosen, rule = threshold_rule(choice, len(correct), wrong_answer_cost=wrong_answer_cost)
    answered = conf >= chosen
    probs = np.stack([1 - conf, conf], axis=1)
    metrics: dict[str, Any] = {
        "calibration_source": source,
        "calibration_queries": len(correct),
        "calibration_right": int(correct.sum()),
        "threshold": chosen,
        "threshold_chosen_on_held_out": threshold is None,
        "threshold_rule": rule,
        "held_out_answered_accuracy": float(correct[answered].mean()) if answered.any() else 0.0,
        "held_out_abstain_rate": float(1 - answered.mean()),
        "held_out_ece": float(expected_calibration_error(probs, correct.astype(np.int64))),
    }
    return Calibrated(calibrator, chosen, metrics)


def threshold_rule(
    choice: ThresholdChoice, n_held_out: int, *, wrong_answer_cost: float
) -> tuple[float, str]:
    """The threshold to use and the rule that chose it (see the module docstring)."""
    minimum = (
        f"minimum of {wrong_answer_cost:g} × wrong answers + wrong abstentions on "
        f"{n_held_out} held-out queries"
    )
    floor = wrong_answer_cost / (1.0 + wrong_answer_cost)
    if n_held_out >= MIN_HELD_OUT or choice.threshold >= floor:
        return choice.threshold, minimum
    return floor, (
        f"floor c/(1 + c) with c = wrong_answer_cost = {floor:.3f}: {n_held_out} held-out "
        f"queries are fewer than {MIN_HELD_OUT}, too few to trust their cost minimum "
        f"({choice.threshold:.3f}) below it; add alternates or calibration queries, or fix "
        "the threshold parameter"
    )


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
