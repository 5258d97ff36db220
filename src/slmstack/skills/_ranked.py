"""Turn class probabilities into ranked :class:`Prediction` objects (torch-free).

Shared by every single-label classifier (torch, exported ONNX, static), so that they
answer with one contract: the top label, its calibrated probability as the confidence,
the top-k scores, token usage and latency, warnings, and the out-of-scope abstention.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from slmstack.types import LabelScore, Prediction, Usage


class TokenCounts(Protocol):
    """Token ids per text and a truncation message per text (torch and ONNX batches)."""

    @property
    def input_ids(self) -> list[list[int]]: ...

    def truncation_warning(self, i: int) -> str | None: ...


def token_facts(tok: TokenCounts) -> tuple[list[int], list[str | None]]:
    """``(input tokens, truncation warning)`` per text, for :func:`ranked_predictions`."""
    counts = [len(ids) for ids in tok.input_ids]
    return counts, [tok.truncation_warning(i) for i in range(len(counts))]


def ranked_predictions(
    probs: NDArray[np.float64],
    classes: Sequence[str],
    top_k: int,
    *,
    input_tokens: Sequence[int],
    latency_ms: float,
    warnings: Sequence[str | None] | None = None,
    in_scope: NDArray[np.float64] | None = None,
    scope_alpha: float = 0.0,
) -> list[Prediction]:
    """One prediction per row of ``probs`` (columns in ``classes`` order).

    ``in_scope`` holds each text's conformal p-value; below ``scope_alpha`` the
    prediction abstains with ``"out_of_scope"`` (and keeps its label and scores).
    """
    k = min(top_k, len(classes))
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    # Python lists rather than numpy scalars: building the objects is the cost here.
    top_p = np.take_along_axis(probs, top, axis=1).tolist()
    p_values = None if in_scope is None else in_scope.tolist()
    out = []
    for i, (best, ps) in enumerate(zip(top.tolist(), top_p, strict=True)):
        warning = None if warnings is None else warnings[i]
        p = None if p_values is None else float(p_values[i])
        out.append(
            Prediction(
                label=classes[best[0]],
                confidence=ps[0],
                scores=tuple(LabelScore(classes[j], q) for j, q in zip(best, ps, strict=True)),
                usage=Usage(input_tokens=input_tokens[i], latency_ms=latency_ms),
                warnings=(warning,) if warning else (),
                data={} if p is None else {"in_scope_p": round(p, 6)},
                abstained="out_of_scope" if p is not None and p < scope_alpha else None,
            )
        )
    return out
