"""What :class:`~slmstack.skills.clauses.ClauseFinder` answers for one contract.

From the clause bounds and the per-type probabilities: the typed spans, the clauses with
their types, the requested types found nowhere, and how sure the least sure of those
present/absent decisions is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.types import Prediction, Span, Usage


def contract_prediction(
    text: str,
    bounds: Sequence[tuple[int, int]],
    p: NDArray[np.float64],
    *,
    types: Sequence[str],
    thresholds: NDArray[np.float64],
    cols: Sequence[int],
    usage: Usage,
) -> Prediction:
    """The :class:`Prediction` for one contract ``text``.

    Its clause ``k`` spans ``bounds[k]`` and has probability ``p[k, j]`` of type
    ``types[j]``; only the types in ``cols`` are answered.
    """
    spans: list[Span] = []
    decision: list[float] = []
    for j in cols:
        hit = p[:, j] >= thresholds[j]
        best = float(p[:, j].max()) if len(p) else 0.0
        decision.append(best if hit.any() else 1.0 - best)
        for row in np.flatnonzero(hit):
            a, b = bounds[int(row)]
            spans.append(Span(types[j], a, b, text[a:b], float(p[row, j])))
    tagged: list[dict[str, Any]] = []
    for k, (a, b) in enumerate(bounds):
        found = [
            {"type": types[j], "confidence": float(p[k, j])}
            for j in cols
            if p[k, j] >= thresholds[j]
        ]
        if found:
            tagged.append({"start": a, "end": b, "types": found})
    present = {s.label for s in spans}
    return Prediction(
        confidence=min(decision, default=1.0),
        spans=tuple(sorted(spans, key=lambda s: (s.start, s.label))),
        data={
            "clauses": tagged,
            "absent": [types[j] for j in cols if types[j] not in present],
            "n_clauses": len(bounds),
        },
        usage=usage,
    )
