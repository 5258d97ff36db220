"""From candidate probabilities to a field value, and tuning the two decision thresholds.

``answer`` is the probability the best candidate needs for the field to be reported at
all (below it the field is missing); ``extend`` is what an adjacent line needs to join
a multi-line text value (an address). Both are tuned per field on held-out documents
to maximise that field's F1, because how often a field is absent, and how its lines
look, differ from one schema to the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.data.fields import FieldSpec, gold_value, same_value
from slmstack.errors import DataError
from slmstack.skills._field_features import Candidate, Line
from slmstack.types import Span

_GRID = [round(x, 2) for x in np.arange(0.05, 0.951, 0.05)]
MIN_TUNING_DOCS = 10  # fewer held-out documents than this: keep the default threshold


def pool_by_value(cands: Sequence[Candidate], p: NDArray[np.float64]) -> NDArray[np.float64]:
    """Score each candidate by noisy-OR, 1 - prod(1 - p), over candidates of equal value.

    A receipt repeats its total (TOTAL, CASH, card slip), so the evidence for a value
    adds up. Among equals the most probable candidate keeps the lead (it is the
    evidence shown).
    """
    miss: dict[str, float] = {}
    for c, q in zip(cands, p, strict=True):
        miss[c.value] = miss.get(c.value, 1.0) * (1.0 - float(q))
    pooled = np.array([1.0 - miss[c.value] for c in cands])
    return pooled + 1e-9 * p


def decode_field(
    spec: FieldSpec,
    text: str,
    lines: Sequence[Line],
    cands: Sequence[Candidate],
    p: NDArray[np.float64],
    answer: float,
    extend: float | None,
    grow_p: NDArray[np.float64] | None = None,
) -> tuple[dict[str, Any], Span | None]:
    """The field's record (value or missing, confidence, evidence) and its span.

    ``extend``: for text fields scored line by line, the probability an adjacent line
    needs to join the value; ``None`` takes the best candidate alone (a span of lines
    already, or a date or amount). ``grow_p``: the probabilities that decide whether an
    adjacent line joins (``p`` where no other text field claims the line more: see
    :func:`~slmstack.skills._field_scoring.growth_probabilities`); by default ``p``.
    """
    if spec.type != "text" and len(p):
        p = pool_by_value(cands, p)
    if not cands or p.max() < answer:
        best = float(p.max()) if len(p) else 0.0
        return {"value": None, "missing": True, "confidence": 1.0 - best}, None
    k = int(p.argmax())
    first = last = k
    if spec.type == "text" and extend is not None:  # grow over adjacent lines that belong
        q = p if grow_p is None else grow_p
        while first > 0 and q[first - 1] >= extend:
            first -= 1
        while last + 1 < len(cands) and q[last + 1] >= extend:
            last += 1
    start, end = cands[first].start, cands[last].end
    conf = float(np.mean(p[first : last + 1]))
    chosen = cands[first : last + 1]
    record: dict[str, Any] = {
        "value": " ".join(c.value for c in chosen) if spec.type == "text" else cands[k].value,
        "confidence": conf,
        "line": lines[cands[first].line].index,
        "start": start,
        "end": end,
        "evidence": " / ".join(
            lines[k].text for c in chosen for k in range(c.line, c.line + c.n_lines)
        ),
    }
    if spec.type == "amount":
        record["currency"] = cands[k].currency
    return record, Span(spec.name, start, end, text[start:end], conf)


def tune_thresholds(
    spec: FieldSpec,
    docs: Sequence[
        tuple[str, Sequence[Line], Sequence[Candidate], NDArray[np.float64], NDArray[np.float64]]
    ],
    gold: Sequence[str | None],
    default: float,
    *,
    grow: bool | None = None,
) -> tuple[float, float]:
    """``(answer, extend)`` maximising the field's F1 on held-out documents.

    Each document comes as ``(text, lines, candidates, p, grow_p)`` (see
    :func:`decode_field`).

    ``grow``: whether a text value grows over adjacent lines (the ``extend`` threshold
    is tuned then; otherwise it stays at ``default``, unused); by default, for text
    fields. Ties go to the pair closest to ``default``; with too few documents the
    default is kept for both.
    """
    grow = spec.type == "text" if grow is None else grow
    if len(docs) < MIN_TUNING_DOCS:
        return default, default
    truth: list[str | None] = []
    for raw in gold:
        try:
            truth.append(gold_value(spec, raw) if raw else None)
        except DataError:
            truth.append(None)
    extends = _GRID if grow else [default]
    best, best_key = (default, default), (-1.0, 0.0)
    for answer in _GRID:
        for extend in extends:
            tp = fp = fn = 0
            for (text, lines, cands, p, q), g in zip(docs, truth, strict=True):
                rec, _ = decode_field(
                    spec, text, lines, cands, p, answer, extend if grow else None, q
                )
                got = rec["value"]
                if got is not None and g is not None and same_value(spec, got.casefold(), g):
                    tp += 1
                    continue
                fp += got is not None
                fn += g is not None
            f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
            key = (f1, -abs(answer - default) - abs(extend - default))
            if key > best_key:
                best, best_key = (answer, extend), key
    return best
