"""Span candidates of text fields: runs of consecutive lines, scored as a whole.

A company name or an address often spans lines (``NO 290, JALAN AIR PANAS,`` /
``SETAPAK,`` / ``53200, KUALA LUMPUR``), with a phone or tax-number line right after.
Scoring each line on its own and growing the best one over neighbours above a
threshold stops early at a short middle line and runs on into a neighbour that merely
looks similar. Here every run of 1 to ``max_lines`` consecutive lines is a candidate of
its own, scored by a second logistic regression from:

* the line scorer's log-odds of its lines (mean, lowest, highest, first, last) and of
  the lines just outside it (a strong line left out, or a weak one let in, is a bad
  boundary), its gap to the document's best line;
* its shape: number of lines, position, length, share of digits and capitals;
* hashed words of its lines and of the lines just before and after (``TEL``, ``GST``
  after an address; legal-form words like ``SDN BHD`` or ``GMBH`` ending a name): cues
  learned from the user's documents, not built in.

The line scorer's probabilities it learns from are out-of-fold (see
:func:`fold_of`), as they will be on documents the line scorer never saw.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from slmstack.data.fields import FieldSpec, gold_value
from slmstack.errors import DataError
from slmstack.skills._field_features import Candidate, Line, word_tokens

_CLIP = 8.0  # log-odds are clipped: one near-certain line must not dominate the span
MIN_LABEL_SIMILARITY = 0.9  # a span this close to the true value is its stand-in


def spans(cands: Sequence[Candidate], max_lines: int) -> list[Candidate]:
    """Every run of 1 to ``max_lines`` consecutive line candidates, joined by a space."""
    out = []
    for i in range(len(cands)):
        for j in range(i, min(i + max_lines, len(cands))):
            if cands[j].line - cands[i].line != j - i:
                break  # only whole runs of adjacent lines
            value = " ".join(c.value for c in cands[i : j + 1])
            first, last = cands[i], cands[j]
            out.append(Candidate(first.line, first.start, last.end, value, None, j - i + 1))
    return out


def _logit(p: NDArray[np.float64]) -> NDArray[np.float64]:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.clip(np.log(q / (1 - q)), -_CLIP, _CLIP)


def span_features(
    runs: Sequence[Candidate], lines: Sequence[Line], p: NDArray[np.float64], max_lines: int
) -> tuple[NDArray[np.float32], list[list[str]]]:
    """Dense features and hashed-word tokens of each span (``p``: line probabilities).

    ``p`` is indexed by line position (text candidates are one per non-empty line).
    """
    n = len(lines)
    logit = _logit(np.asarray(p, dtype=np.float64)) if n else np.zeros(0)
    best = float(logit.max()) if n else 0.0
    tokens = [word_tokens(ln.text) for ln in lines]
    dense, words = [], []
    for s in runs:
        i, j = s.line, s.line + s.n_lines - 1
        inside = logit[i : j + 1]
        before = float(logit[i - 1]) if i > 0 else -_CLIP
        after = float(logit[j + 1]) if j + 1 < n else -_CLIP
        text = s.value
        letters = [ch for ch in text if ch.isalpha()]
        size = [0.0] * max_lines
        size[s.n_lines - 1] = 1.0
        facts = [
            float(inside.mean()) / _CLIP,
            float(inside.min()) / _CLIP,
            float(inside.max()) / _CLIP,
            float(inside[0]) / _CLIP,
            float(inside[-1]) / _CLIP,
            before / _CLIP,
            after / _CLIP,
            float(max(before, after) > 0),  # a likely line is left out
            float(inside.min() < 0),  # an unlikely line is let in
            (best - float(inside.max())) / _CLIP,
            float(i == 0),
            float(j == n - 1),
            i / max(1, n),
            math.log1p(len(text)),
            sum(ch.isdigit() for ch in text) / max(1, len(text)),
            sum(ch.isupper() for ch in letters) / max(1, len(letters)),
            *size,
        ]
        dense.append(facts)
        toks = [f"w:{w}" for k in range(i, j + 1) for w in tokens[k]]
        toks += [f"e:{w}" for w in tokens[j][-2:]]  # how it ends
        toks += [f"b:{w}" for w in tokens[i - 1]] if i > 0 else ["b:<start>"]
        toks += [f"a:{w}" for w in tokens[j + 1]] if j + 1 < n else ["a:<end>"]
        words.append(toks)
    width = 16 + max_lines
    matrix = np.asarray(dense, dtype=np.float32) if dense else np.zeros((0, width), np.float32)
    return matrix, words


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text.casefold())


def label_spans(
    spec: FieldSpec, runs: Sequence[Candidate], raw: str | None, source: str
) -> list[int]:
    """1 for the span that holds the true value, else 0.

    A span equal to the true value (case and spaces ignored) is positive. Failing that,
    the span most like it, if at least :data:`MIN_LABEL_SIMILARITY` alike, stands in
    (OCR slips and annotators' punctuation: ``PANAS.`` for ``PANAS,``), so that such a
    document still teaches where the value is.
    """
    if raw is None or not str(raw).strip() or not runs:
        return [0] * len(runs)
    try:
        gold = _squash(gold_value(spec, str(raw)))
    except DataError as exc:
        raise DataError(
            f"{source or 'example'}: the true value of {spec.name!r} cannot be read: {exc}"
        ) from None
    got = [_squash(s.value) for s in runs]
    exact = [int(g == gold) for g in got]
    if any(exact):
        return exact
    sims = [
        difflib.SequenceMatcher(None, g, gold, autojunk=False).ratio()
        if abs(len(g) - len(gold)) <= 0.2 * len(gold)
        else 0.0
        for g in got
    ]
    k = int(np.argmax(sims))
    return [int(i == k and sims[k] >= MIN_LABEL_SIMILARITY) for i in range(len(runs))]


def fold_of(groups: Sequence[str], folds: int, seed: int) -> NDArray[np.intp] | None:
    """Each document's fold (0 to ``folds - 1``); documents of one group share a fold.

    ``groups`` names each document's group: documents with the same key stay together,
    so that a vendor's receipts are never scored by a line scorer trained on that vendor.
    ``None`` when there are fewer groups than folds.
    """
    keys = sorted(set(groups))
    if len(keys) < folds:
        return None
    order = np.random.default_rng(seed).permutation(len(keys))
    fold = {keys[k]: n % folds for n, k in enumerate(order)}
    return np.array([fold[g] for g in groups], dtype=np.intp)
