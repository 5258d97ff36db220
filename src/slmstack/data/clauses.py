"""Clause data: splitting a contract into clauses and labelling them from CUAD snippets."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_BLANK = re.compile(r"\n[ \t\r\f\v]*\n")
_SENTENCE_END = re.compile(r"(?<=[.;:])\s+(?=[A-Z(\"“0-9])")


@dataclass(frozen=True)
class ClauseExample:
    """A clause (or paragraph) and the clause types it expresses (possibly none).

    ``position`` is ``(index, count)``: the clause is number ``index`` (from 0) of the
    ``count`` clauses of its contract, when known (:func:`label_clauses` records it).
    """

    text: str
    labels: tuple[str, ...] = ()
    source: str = ""
    position: tuple[int, int] | None = None


def document_of(example: ClauseExample) -> str:
    """The document a clause came from.

    Its ``source`` before the ``@offset`` that :func:`label_clauses` appends (the whole
    ``source`` when there is none).
    """
    return example.source.rsplit("@", 1)[0]


def split_clauses(
    text: str, *, min_chars: int = 40, max_chars: int = 1500
) -> list[tuple[int, int]]:
    """Clause offsets ``(start, end)``.

    Clauses are paragraphs, with headings joined to what follows and over-long
    paragraphs cut at sentence ends.

    Paragraphs are separated by blank lines; a text without blank lines is split at
    line breaks instead.
    """
    sep = _BLANK if _BLANK.search(text) else re.compile(r"\n")
    pieces, pos = [], 0
    for m in sep.finditer(text):
        pieces.append((pos, m.start()))
        pos = m.end()
    pieces.append((pos, len(text)))
    stripped = []
    for a, b in pieces:
        body = text[a:b]
        if body.strip():
            lead = len(body) - len(body.lstrip())
            stripped.append((a + lead, a + len(body.rstrip())))
    merged: list[tuple[int, int]] = []
    carry: int | None = None  # start of short pieces (headings) waiting for a body
    for a, b in stripped:
        start = carry if carry is not None else a
        if b - start < min_chars:
            carry = start
            continue
        merged.append((start, b))
        carry = None
    if carry is not None:
        if merged:
            merged[-1] = (merged[-1][0], stripped[-1][1])
        else:
            merged.append((carry, stripped[-1][1]))
    out: list[tuple[int, int]] = []
    for a, b in merged:
        while b - a > max_chars:
            window = text[a : a + max_chars]
            cuts = [m.start() for m in _SENTENCE_END.finditer(window) if m.start() > max_chars // 3]
            cut = a + (cuts[-1] if cuts else max_chars)
            out.append((a, cut))
            a = cut + (len(text[cut:]) - len(text[cut:].lstrip()))
        out.append((a, b))
    return out


def _collapsed(text: str) -> tuple[str, list[int]]:
    """Text with whitespace runs as one space, and each character's original offset."""
    chars, where = [], []
    prev_space = False
    for i, ch in enumerate(text):
        if ch.isspace():
            if prev_space:
                continue
            chars.append(" ")
            prev_space = True
        else:
            chars.append(ch)
            prev_space = False
        where.append(i)
    return "".join(chars), where


def locate(text: str, snippet: str) -> tuple[int, int] | None:
    """Offsets of ``snippet`` in ``text``, ignoring differences in whitespace."""
    at = text.find(snippet)
    if at >= 0:
        return at, at + len(snippet)
    flat, where = _collapsed(text)
    needle = " ".join(snippet.split())
    at = flat.find(needle) if needle else -1
    if at < 0:
        return None
    return where[at], where[at + len(needle) - 1] + 1


def label_clauses(
    text: str,
    annotations: Mapping[str, Sequence[str]],
    *,
    source: str = "",
    min_chars: int = 40,
    max_chars: int = 1500,
) -> tuple[list[ClauseExample], int]:
    """Split a contract and label each clause with the types whose snippets overlap it.

    ``annotations`` maps a clause type to the exact text snippets that express it (the
    CUAD format). Returns the labelled clauses, in order and with their positions, and
    how many snippets were not found. ``min_chars`` and ``max_chars``: as in
    :func:`split_clauses` (a finder's own, so that it learns the clauses it will read).
    """
    spans = split_clauses(text, min_chars=min_chars, max_chars=max_chars)
    labels: list[set[str]] = [set() for _ in spans]
    missing = 0
    for label, snippets in annotations.items():
        for snippet in snippets:
            found = locate(text, snippet)
            if found is None:
                missing += 1
                continue
            s, e = found
            for k, (a, b) in enumerate(spans):
                if a < e and s < b:
                    labels[k].add(label)
    examples = [
        ClauseExample(text[a:b], tuple(sorted(lab)), f"{source}@{a}", (k, len(spans)))
        for k, ((a, b), lab) in enumerate(zip(spans, labels, strict=True))
    ]
    return examples, missing
