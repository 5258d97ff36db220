"""Candidates and features of the field extractor.

A document is a list of lines. Each declared field has its own kind of candidate:

* ``text``: every non-empty line (a value may be several adjacent lines);
* ``date``: every date the normaliser finds, with its line;
* ``amount``: every amount the normaliser finds, with its line.

A candidate is described by the encoder vectors of its line and of the lines just
before and after (where "TOTAL" or "Date:" labels usually sit), hashed words of those
three lines (exact keywords the vectors blur: ``TOTAL`` against ``SUBTOTAL``), its
position in the document, and value facts (is it the largest amount, how often does it
occur, which date is it in order; for amounts, :class:`MoneyRelations`).
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.data.fields import FieldSpec, gold_value, same_value
from slmstack.data.normalizers import (
    Money,
    drop_trailing_code,
    find_amounts,
    find_dates,
    normalize_text,
)
from slmstack.errors import DataError

HASH_FEATURES = 2**14
_WORD = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class Line:
    """A non-empty line: its index among the document's lines and its offsets."""

    index: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Candidate:
    """A possible value of a field: where it is, and its normalised value."""

    line: int  # position in the document's non-empty lines
    start: int
    end: int
    value: str  # normalised: ISO date, plain decimal, or the line text
    currency: str | None = None
    n_lines: int = 1  # a span of consecutive lines (text fields), from ``line`` on


def split_lines(text: str) -> list[Line]:
    r"""Non-empty lines with their character offsets (surrounding blanks excluded).

    A form feed or a line separator also ends a line here (pdftotext ends each page with
    one), but ``index`` counts ``\n`` only, as an editor numbers the lines shown.
    """
    out, pos, newlines = [], 0, 0
    for raw in text.splitlines(keepends=True):
        body = raw.rstrip("\r\n")
        stripped = body.strip()
        if stripped:
            start = pos + (len(body) - len(body.lstrip()))
            out.append(Line(newlines, start, start + len(stripped), stripped))
        pos += len(raw)
        newlines += raw.endswith("\n")
    return out


def candidates(spec: FieldSpec, lines: Sequence[Line]) -> list[Candidate]:
    """All candidates of ``spec`` in a document."""
    out: list[Candidate] = []
    for k, line in enumerate(lines):
        if spec.type == "text":
            value = drop_trailing_code(line.text) if spec.drop_code else line.text
            out.append(Candidate(k, line.start, line.start + len(value), value))
        elif spec.type == "date":
            for s, e, date in find_dates(line.text, order=spec.order):
                out.append(Candidate(k, line.start + s, line.start + e, date.isoformat()))
        else:
            for s, e, money in find_amounts(line.text):
                cur = money.currency or spec.currency
                out.append(Candidate(k, line.start + s, line.start + e, str(money.amount), cur))
    return out


def line_in_value(line: str, value: str) -> bool:
    """Whether an (OCR-noisy) line is part of a multi-line text value.

    True when at least 80% of the line's characters (spaces ignored) match the value in
    long runs, which tolerates OCR slips (``SDN BND`` for ``SDN BHD``).
    """
    a = normalize_text(line).replace(" ", "")
    b = value.replace(" ", "")
    if len(a) < 3 or not b:
        return False
    if a in b:
        return True
    blocks = difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()
    matched = sum(m.size for m in blocks if m.size >= 3)
    return matched >= 0.8 * len(a)


def label_candidates(
    spec: FieldSpec, cands: Sequence[Candidate], lines: Sequence[Line], raw: str | None,
    source: str,
) -> list[int]:  # fmt: skip
    """1 for candidates that carry the true value, else 0."""
    if raw is None or not str(raw).strip():
        return [0] * len(cands)
    try:
        gold = gold_value(spec, str(raw))
    except DataError as exc:
        raise DataError(
            f"{source or 'example'}: the true value of {spec.name!r} cannot be read as a "
            f"{spec.type}: {exc}"
        ) from None
    if spec.type == "text":
        return [int(line_in_value(c.value, gold)) for c in cands]
    return [int(same_value(spec, c.value, gold)) for c in cands]


class MoneyRelations:
    """How an amount relates to the document's other sums of money (vendor-independent).

    A receipt's total is usually the sum of two other printed sums (net + tax, subtotal +
    rounding) and the largest sum printed before what was tendered. Only amounts written
    with decimals count as money here, so quantities, phone and invoice numbers do not
    make false sums. Facts: is the amount the sum of two such amounts, is it the largest,
    its rank among them, and is it what remains of a larger one after another (tendered
    minus change).

    Example:
        >>> MoneyRelations(["73.52", "20.67", "94.19", "100.00", "5.81", "3"]).facts(
        ...     Decimal("94.19"))
        [1.0, 0.0, 0.2, 1.0]
    """

    N_FACTS = 4

    def __init__(self, values: Iterable[str]):
        self.money = sorted({Decimal(v) for v in values if "." in v}, reverse=True)
        self._set = set(self.money)

    def facts(self, value: Decimal) -> list[float]:
        if value not in self._set:
            return [0.0, 0.0, 1.0, 0.0]
        is_sum = any(0 < a < value and (value - a) in self._set for a in self.money)
        is_rest = any(a > value and (a - value) in self._set for a in self.money)
        rank = self.money.index(value) / max(1, len(self.money))
        return [float(is_sum), float(rank == 0), rank, float(is_rest)]


N_FACTS = 16 + MoneyRelations.N_FACTS  # position and value facts per candidate
FEATURE_LAYOUT = 2  # saved with each model; 2: money facts added (models of 1 must retrain)


def word_tokens(text: str) -> list[str]:
    """Lower-cased words and punctuation marks, digits as ``0`` (``TEL:`` -> tel, :)."""
    return [re.sub(r"\d", "0", w.lower()) for w in _WORD.findall(text)]


def _words(text: str, prefix: str) -> list[str]:
    return [prefix + w for w in word_tokens(text)]


def features(
    spec: FieldSpec,
    cands: Sequence[Candidate],
    lines: Sequence[Line],
    embed: Callable[[str], NDArray[np.float32]],
    dim: int,
) -> tuple[NDArray[np.float32], list[list[str]]]:
    """Dense features and hashed-word tokens of each candidate of one document."""
    n = max(1, len(lines))
    zero = np.zeros(dim, dtype=np.float32)
    amounts = [Decimal(c.value) for c in cands] if spec.type == "amount" else []
    counts = Counter(c.value for c in cands)
    ranks = {v: r for r, v in enumerate(sorted(set(amounts), reverse=True))}
    money = MoneyRelations(c.value for c in cands if spec.type == "amount")
    dense, words = [], []
    for order, c in enumerate(cands):
        line = lines[c.line].text
        prev = lines[c.line - 1].text if c.line > 0 else ""
        nxt = lines[c.line + 1].text if c.line + 1 < len(lines) else ""
        letters = [ch for ch in line if ch.isalpha()]
        facts = [
            c.line / n,
            (n - 1 - c.line) / n,
            float(c.line < 3),
            math.log1p(c.line),
            math.log1p(n - 1 - c.line),
            sum(ch.isdigit() for ch in line) / len(line),
            sum(ch.isupper() for ch in letters) / max(1, len(letters)),
            math.log1p(len(line)),
            order / max(1, len(cands)),  # which date/amount, in reading order
            float(order == 0),
            float(order == len(cands) - 1),
            math.log1p(counts[c.value]),
        ]
        if spec.type == "amount":
            value = Decimal(c.value)
            facts += [
                float(ranks[value] == 0),
                ranks[value] / max(1, len(ranks)),
                float("." in c.value or "," in c.value),
                float(c.currency is not None),
                *money.facts(value),
            ]
        else:
            facts += [0.0] * (4 + MoneyRelations.N_FACTS)
        dense.append(
            np.concatenate(
                [
                    embed(line),
                    embed(prev) if prev else zero,
                    embed(nxt) if nxt else zero,
                    np.asarray(facts, dtype=np.float32),
                ]
            )
        )
        words.append(_words(line, "") + _words(prev, "p:") + _words(nxt, "n:"))
    width = 3 * dim + N_FACTS
    matrix = np.stack(dense) if dense else np.zeros((0, width), dtype=np.float32)
    return matrix.astype(np.float32), words


def hash_words(words: Sequence[Sequence[str]]) -> Any:
    """Sparse binary matrix of hashed word features (stateless, nothing to save)."""
    from scipy import sparse
    from sklearn.feature_extraction import FeatureHasher

    if not words:
        return sparse.csr_matrix((0, HASH_FEATURES), dtype=np.float64)
    hasher = FeatureHasher(n_features=HASH_FEATURES, input_type="string", alternate_sign=False)
    matrix = hasher.transform(list(words))
    matrix.data = np.minimum(matrix.data, 1.0)
    return matrix


def money_of(c: Candidate) -> Money:
    """The candidate's value as :class:`Money`."""
    return Money(Decimal(c.value), c.currency)
