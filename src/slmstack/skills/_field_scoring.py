"""How :class:`~slmstack.skills.fields.FieldExtractor` scores candidates.

Each field's candidates (lines, dates, amounts) become a feature matrix: the frozen
encoder's vectors of the line and its neighbours, hashed words, position and value facts.
One logistic regression per field scores them; with ``text_decode="spans"`` a second one
scores runs of lines from out-of-fold line scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.data.fields import FieldExample, FieldSpec
from slmstack.errors import DataError
from slmstack.skills._field_features import (
    Candidate,
    Line,
    candidates,
    features,
    hash_words,
    label_candidates,
)
from slmstack.skills._field_fit import (
    Weights,
    fit_logistic,
    out_of_fold_probabilities,
    probabilities,
    span_matrix,
)
from slmstack.skills._field_spans import label_spans
from slmstack.skills._frozen import FrozenEncoder

# A field's candidates in one document, their probabilities, and the probabilities that
# decide whether an adjacent line joins a text value.
Scored = tuple[list[Candidate], NDArray[np.float64], NDArray[np.float64]]


def growth_probabilities(
    line_p: dict[str, list[NDArray[np.float64]]],
) -> dict[str, list[NDArray[np.float64]]]:
    """Per text field, its line probabilities where no other text field claims the line more.

    A line that reads more like another field's value (the company name above an
    address) does not join this field's value: its growth probability becomes 0. The
    fields given are the text fields decoded line by line, one candidate per line.

    Example:
        >>> import numpy as np
        >>> p = {"company": [np.array([0.9, 0.6, 0.1])],
        ...      "address": [np.array([0.7, 0.8, 0.9])]}
        >>> [q.tolist() for q in growth_probabilities(p)["address"]]
        [[0.0, 0.8, 0.9]]
    """
    out = {}
    for name, per_doc in line_p.items():
        rivals = [other for key, other in line_p.items() if key != name]
        grow = []
        for i, p in enumerate(per_doc):
            best_rival = np.max([r[i] for r in rivals], axis=0) if rivals else np.zeros_like(p)
            grow.append(np.where(p >= best_rival, p, 0.0))
        out[name] = grow
    return out


class FieldScorer:
    """The scoring half of :class:`~slmstack.skills.fields.FieldExtractor` (a mixin)."""

    specs_: list[FieldSpec]
    encoder_: FrozenEncoder
    weights_: dict[str, Weights]
    span_weights_: dict[str, Weights]
    c: float
    seed: int
    text_decode: str
    max_span_lines: int

    def _matrix(
        self, spec: FieldSpec, docs: Sequence[list[Line]]
    ) -> tuple[Any, list[list[Candidate]]]:
        from scipy import sparse

        per_doc = [candidates(spec, lines) for lines in docs]
        dense, words = [], []
        for cands, lines in zip(per_doc, docs, strict=True):
            d, w = features(spec, cands, lines, self.encoder_.vector, self.encoder_.dim)
            dense.append(d)
            words += w
        x = sparse.hstack([sparse.csr_matrix(np.concatenate(dense)), hash_words(words)])
        return x.tocsr(), per_doc

    def _spans_on(self, spec: FieldSpec) -> bool:
        return spec.type == "text" and self.text_decode == "spans"

    def _fit_fields(
        self, docs: Sequence[list[Line]], examples: Sequence[FieldExample], groups: Sequence[str]
    ) -> tuple[dict[str, Weights], dict[str, Weights]]:
        """Each field's line (candidate) scorer, and each text field's span scorer."""
        weights, span_weights = {}, {}
        labelled = []
        for spec in self.specs_:  # every field's labels are read before anything is fitted
            x, per_doc = self._matrix(spec, docs)
            y = np.array(
                [
                    v
                    for ex, cands, lines in zip(examples, per_doc, docs, strict=True)
                    for v in label_candidates(
                        spec, cands, lines, ex.values.get(spec.name), ex.source
                    )
                ]
            )
            if y.sum() == 0:
                raise DataError(
                    f"field {spec.name!r}: no candidate in the {len(examples)} training "
                    "documents matches the true values, so nothing can be learned. Check "
                    f"that the values appear in the texts (type {spec.type!r}, date order "
                    f"{spec.order})."
                )
            labelled.append((spec, x, y, per_doc))
        for spec, x, y, per_doc in labelled:
            weights[spec.name] = fit_logistic(x, y, self.c, self.seed)
            if not self._spans_on(spec):
                continue
            bounds = np.cumsum([0, *(len(c) for c in per_doc)])
            line_p = out_of_fold_probabilities(x, y, bounds, groups, self.c, self.seed)
            if line_p is None:
                raise DataError(
                    f"field {spec.name!r}: span scoring needs documents from at least 3 "
                    f"groups, and there are {len(set(groups))}; add documents, or pass "
                    "text_decode='lines'"
                )
            xs, runs = span_matrix(per_doc, docs, line_p, self.max_span_lines)
            ys = np.array(
                [
                    v
                    for ex, r in zip(examples, runs, strict=True)
                    for v in label_spans(spec, r, ex.values.get(spec.name), ex.source)
                ]
            )
            span_weights[spec.name] = fit_logistic(xs, ys, self.c, self.seed)
        return weights, span_weights

    def _scores(self, docs: Sequence[list[Line]]) -> dict[str, list[Scored]]:
        """Each field's candidates, their probabilities and growth probabilities, per document.

        Growth probabilities: for text fields read line by line, see
        :func:`growth_probabilities`; otherwise the probabilities themselves.
        """
        self.encoder_.cache([ln.text for lines in docs for ln in lines])
        found: dict[str, tuple[list[list[Candidate]], list[NDArray[np.float64]]]] = {}
        for spec in self.specs_:
            x, per_doc = self._matrix(spec, docs)
            scores = probabilities(x, self.weights_[spec.name])
            bounds = np.cumsum([0, *(len(c) for c in per_doc)])
            line_p = [scores[bounds[i] : bounds[i + 1]] for i in range(len(per_doc))]
            if self._spans_on(spec):  # the candidates become runs of lines
                xs, per_doc = span_matrix(per_doc, docs, line_p, self.max_span_lines)
                scores = probabilities(xs, self.span_weights_[spec.name])
                bounds = np.cumsum([0, *(len(c) for c in per_doc)])
                line_p = [scores[bounds[i] : bounds[i + 1]] for i in range(len(per_doc))]
            found[spec.name] = (per_doc, line_p)
        by_line = {
            s.name: found[s.name][1]
            for s in self.specs_
            if s.type == "text" and not self._spans_on(s)
        }
        grow = growth_probabilities(by_line)
        return {
            name: list(zip(per_doc, p, grow.get(name, p), strict=True))
            for name, (per_doc, p) in found.items()
        }


__all__ = ["FieldScorer", "Scored", "growth_probabilities"]
