"""Entity-tagging data: CoNLL (IOB1 or IOB2) and JSONL with character-offset spans.

Both formats become :class:`TaggedExample`: the text, its entity spans as character
offsets (``text[start:end] == span.text``) and, for CoNLL, the token offsets, so that
evaluation can score on the original tokens.

Example:
    >>> tokens, tags = ["Anna", "lives", "in", "Paris"], ["B-PER", "O", "O", "B-LOC"]
    >>> ex = TaggedExample.from_tokens(tokens, tags)
    >>> [(s.label, s.text) for s in ex.spans]
    [('PER', 'Anna'), ('LOC', 'Paris')]
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from slmstack.data.readers import check_key, read_records
from slmstack.data.utf8 import jsonl_lines, read_utf8
from slmstack.errors import DataError
from slmstack.types import Span

Scheme = Literal["auto", "iob1", "iob2"]
_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class TaggedExample:
    """A text with its entity spans (character offsets) and optional token offsets."""

    text: str
    spans: tuple[Span, ...]
    tokens: tuple[tuple[int, int], ...] = ()
    source: str = ""

    @classmethod
    def from_tokens(
        cls,
        tokens: Sequence[str],
        tags: Sequence[str],
        *,
        scheme: Scheme = "auto",
        source: str = "",
    ) -> TaggedExample:
        """Join ``tokens`` with single spaces and turn their IOB ``tags`` into spans."""
        if len(tokens) != len(tags):
            raise DataError(
                f"{source or 'example'}: {len(tokens)} tokens but {len(tags)} tags; every "
                "token needs exactly one tag"
            )
        offsets: list[tuple[int, int]] = []
        pos = 0
        for tok in tokens:
            if not tok or any(c.isspace() for c in tok):
                raise DataError(f"{source or 'example'}: token {tok!r} is empty or has spaces")
            offsets.append((pos, pos + len(tok)))
            pos += len(tok) + 1
        text = " ".join(tokens)
        spans = tuple(
            Span(label, offsets[i][0], offsets[j - 1][1], text[offsets[i][0] : offsets[j - 1][1]])
            for label, i, j in tags_to_chunks(tags, scheme=scheme, source=source)
        )
        return cls(text, spans, tuple(offsets), source)

    def word_offsets(self) -> tuple[tuple[int, int], ...]:
        """Token offsets: the CoNLL tokens when known, else words and punctuation marks."""
        return self.tokens or word_offsets(self.text)


def word_offsets(text: str) -> tuple[tuple[int, int], ...]:
    """Offsets of words and single punctuation marks (the evaluation tokens of free text)."""
    return tuple(m.span() for m in _TOKEN_RE.finditer(text))


def _split_tag(tag: str, source: str, index: int) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, sep, label = tag.partition("-")
    if not sep or prefix not in {"B", "I"} or not label:
        raise DataError(
            f"{source or 'example'}: tag #{index + 1} {tag!r} is not IOB; use 'O', 'B-TYPE' "
            "or 'I-TYPE'"
        )
    return prefix, label


def tags_to_chunks(
    tags: Sequence[str], *, scheme: Scheme = "auto", source: str = ""
) -> list[tuple[str, int, int]]:
    """``(label, first, end)`` token ranges of the entities in an IOB tag sequence.

    IOB1 and IOB2 decode the same way: ``B-X`` always starts an entity and ``I-X``
    continues an ``X`` entity or, after anything else, starts one (IOB1). With
    ``scheme="iob2"`` that last case is an error instead, which catches broken files.
    """
    chunks: list[tuple[str, int, int]] = []
    current: tuple[str, int] | None = None
    for i, tag in enumerate(tags):
        prefix, label = _split_tag(tag, source, i)
        continues = prefix == "I" and current is not None and current[0] == label
        if prefix == "I" and not continues and scheme == "iob2":
            raise DataError(
                f"{source or 'example'}: tag #{i + 1} {tag!r} follows "
                f"{tags[i - 1] if i else 'the start'!r}, which IOB2 forbids; pass scheme='iob1' "
                "(CLI: --scheme iob1) if the file is IOB1"
            )
        if continues:
            continue
        if current is not None:
            chunks.append((current[0], current[1], i))
            current = None
        if prefix in {"B", "I"}:
            current = (label, i)
    if current is not None:
        chunks.append((current[0], current[1], len(tags)))
    return chunks


def spans_to_tags(offsets: Sequence[tuple[int, int]], spans: Sequence[Span]) -> list[str]:
    """IOB2 tags of the tokens at ``offsets``: a token belongs to a span it overlaps."""
    tags = ["O"] * len(offsets)
    for span in sorted(spans, key=lambda s: s.start):
        first = True
        for i, (a, b) in enumerate(offsets):
            if b > span.start and a < span.end and tags[i] == "O":
                tags[i] = ("B-" if first else "I-") + span.label
                first = False
    return tags


def check_spans(examples: Sequence[TaggedExample], what: str = "training") -> None:
    """Refuse spans that would train on wrong labels, naming the example and the fix.

    A span outside the text, one that overlaps another, or one whose ``text`` is not
    ``example.text[start:end]`` (offsets counted in bytes or UTF-16 units) is an error.
    The readers check their files this way; this checks examples built in Python.
    """
    for n, ex in enumerate(examples, start=1):
        where = ex.source or f"{what} example #{n}"
        for k, s in enumerate(ex.spans, start=1):
            if not (isinstance(s.start, int) and isinstance(s.end, int)) or not (
                0 <= s.start < s.end <= len(ex.text)
            ):
                raise DataError(
                    f"{where}: span #{k} [{s.start!r}, {s.end!r}) is empty or outside the "
                    f"text (length {len(ex.text)}); offsets count Unicode characters, end "
                    "exclusive"
                )
            if s.text != ex.text[s.start : s.end]:
                raise DataError(
                    f"{where}: span #{k} says {s.text!r} but text[{s.start}:{s.end}] is "
                    f"{ex.text[s.start : s.end]!r}; offsets must count Unicode characters "
                    "(not bytes or UTF-16 units)"
                )
        ordered = sorted(ex.spans, key=lambda s: s.start)
        for a, b in itertools.pairwise(ordered):
            if b.start < a.end:
                raise DataError(
                    f"{where}: spans {a.text!r} ({a.label}) and {b.text!r} ({b.label}) "
                    "overlap; nested entities are not supported, keep one of them"
                )


def read_conll(
    path: str | Path, *, scheme: Scheme = "auto", tag_column: int = -1
) -> list[TaggedExample]:
    """Read a CoNLL file: one token per line, token first, the tag in ``tag_column``.

    Sentences are separated by blank lines; ``-DOCSTART-`` lines are skipped.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("no such file; check the path", path=p)
    examples: list[TaggedExample] = []
    tokens: list[str] = []
    tags: list[str] = []
    start_line = 1
    n_columns: int | None = None

    def flush(lineno: int) -> None:
        if tokens:
            examples.append(
                TaggedExample.from_tokens(tokens, tags, scheme=scheme, source=f"{p}:{start_line}")
            )
        tokens.clear()
        tags.clear()

    for lineno, line in enumerate(jsonl_lines(read_utf8(p)), start=1):
        cols = line.split()
        if not cols or cols[0] == "-DOCSTART-":
            flush(lineno)
            continue
        if len(cols) < 2:
            raise DataError(
                f"line has {len(cols)} column ({line.strip()!r}); CoNLL needs a token and a tag "
                "per line, separated by whitespace",
                path=p,
                row=lineno,
            )
        if n_columns is None:
            n_columns = len(cols)
        elif len(cols) != n_columns:
            raise DataError(
                f"line has {len(cols)} columns, earlier lines have {n_columns}; every token "
                "line needs the same columns",
                path=p,
                row=lineno,
            )
        if not tokens:
            start_line = lineno
        tokens.append(cols[0])
        try:
            tags.append(cols[tag_column])
        except IndexError:
            raise DataError(f"no column {tag_column}", path=p, row=lineno) from None
        try:
            _split_tag(tags[-1], "", 0)
        except DataError:
            raise DataError(
                f"tag {tags[-1]!r} is not IOB (O, B-TYPE or I-TYPE): the tag must be the "
                f"line's column {tag_column} (in Python, read_conll(tag_column=N)), and "
                "BIOES or BILOU tags (S-, E-, L-, U-) must be converted to IOB first",
                path=p,
                row=lineno,
            ) from None
    flush(0)
    if not examples:
        raise DataError("no sentences found", path=p)
    return examples


def read_span_jsonl(
    path: str | Path, *, text_key: str = "text", spans_key: str = "spans"
) -> list[TaggedExample]:
    """Read JSONL lines ``{"text": ..., "spans": [{"start", "end", "label"}, ...]}``.

    A span may also give its ``text``, which must equal ``text[start:end]``.
    """
    p = Path(path)
    out: list[TaggedExample] = []
    for rec in read_records(p):
        text = rec.fields.get(text_key)
        if not isinstance(text, str):
            raise DataError(f"no string {text_key!r} key", path=p, row=rec.line)
        check_key(rec.fields, spans_key, p, rec.line, also=("entities", "ents", "annotations"))
        raw = rec.fields.get(spans_key, [])
        if not isinstance(raw, list):
            raise DataError(f"{spans_key!r} must be a list", path=p, row=rec.line)
        spans: list[Span] = []
        for k, s in enumerate(raw):
            if not isinstance(s, dict) or not {"start", "end", "label"} <= set(s):
                raise DataError(
                    f"span #{k + 1} must be an object with start, end and label; got {s!r}",
                    path=p,
                    row=rec.line,
                )
            start, end, label = s["start"], s["end"], s["label"]
            if not isinstance(label, str) or not label.strip():
                raise DataError(
                    f"span #{k + 1}: label must be a non-empty string (the entity type, e.g. "
                    f"'PER'); got {label!r}",
                    path=p,
                    row=rec.line,
                )
            if not (isinstance(start, int) and isinstance(end, int)):
                raise DataError(f"span #{k + 1}: start/end must be integers", path=p, row=rec.line)
            if not 0 <= start < end <= len(text):
                raise DataError(
                    f"span #{k + 1} [{start}, {end}) is outside the text (length {len(text)}) "
                    "or empty; offsets count Unicode characters, end exclusive",
                    path=p,
                    row=rec.line,
                )
            if "text" in s and s["text"] != text[start:end]:
                raise DataError(
                    f"span #{k + 1} says {s['text']!r} but text[{start}:{end}] is "
                    f"{text[start:end]!r}; offsets must count Unicode characters",
                    path=p,
                    row=rec.line,
                )
            spans.append(Span(str(label), start, end, text[start:end]))
        spans.sort(key=lambda s: s.start)
        for a, b in itertools.pairwise(spans):
            if b.start < a.end:
                raise DataError(
                    f"spans {a.text!r} and {b.text!r} overlap; nested entities are not "
                    "supported, keep one of them",
                    path=p,
                    row=rec.line,
                )
        out.append(TaggedExample(text, tuple(spans), (), f"{p}:{rec.line}"))
    if not out:
        raise DataError("file has no rows", path=p)
    return out


def read_tagged(path: str | Path, *, scheme: Scheme = "auto") -> list[TaggedExample]:
    """Read CoNLL (``.conll``, ``.txt``, ``.iob``, ``.bio``) or span JSONL by extension."""
    p = Path(path)
    if p.suffix.lower() in {".jsonl", ".ndjson"}:
        return read_span_jsonl(p)
    if p.suffix.lower() in {".conll", ".txt", ".iob", ".bio", ".tsv"}:
        return read_conll(p, scheme=scheme)
    raise DataError(
        f"unsupported file type {p.suffix!r} for tagging; use CoNLL (.conll, .txt) or "
        "span JSONL (.jsonl)",
        path=p,
    )
