"""Readers for CSV, TSV and JSONL files.

Every record keeps the line it came from, so that validation errors can say
``data.csv:17: empty text in column 'text'``.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from slmstack.data.utf8 import decode_utf8, jsonl_lines, lone_surrogate
from slmstack.data.validation import validate_examples
from slmstack.errors import DataError
from slmstack.types import Example

_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# Parsed Python strings and dicts take several times the bytes of the file.
_MEMORY_FACTOR = 6
# Enough of the file to see the delimiter; cut at a line end so no row is half-seen.
_SNIFF_CHARS = 8192
_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
# csv refuses fields over 128 KiB by default, yet a whole document in one cell is fair
# and _check_size already bounds the file. 2**31 - 1 fits a C long on every platform;
# sys.maxsize overflows it on Windows.
_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)


@dataclass(frozen=True)
class Record:
    """One row of a file: its fields and the 1-based line it starts on."""

    fields: dict[str, Any]
    line: int


def _detect_format(path: Path) -> str:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"unsupported file type {path.suffix!r}; use .csv, .tsv or .jsonl",
            path=path,
        )
    return fmt


def _check_size(path: Path, max_bytes: int | None) -> None:
    size = path.stat().st_size
    limit = max_bytes
    if limit is None:
        limit = psutil.virtual_memory().available // _MEMORY_FACTOR
    if size > limit:
        raise DataError(
            f"file is {size / 1e6:.1f} MB, too large to load into memory here (limit "
            f"{limit / 1e6:.1f} MB). Split it into parts and train on one part, then resume "
            "the saved skill with the next part, or sample it.",
            path=path,
        )


@functools.cache
def _allow_large_fields() -> None:
    # Process-wide, so it is raised once and never lowered.
    if csv.field_size_limit() < _FIELD_LIMIT:
        csv.field_size_limit(_FIELD_LIMIT)


def _sniff_delimiter(text: str, default: str) -> str:
    """The delimiter of the first few KB, or ``default`` when that cannot be told.

    A guess that does not occur in the header line is refused: a one-column file whose
    texts all hold a semicolon is still one column.
    """
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        found = csv.Sniffer().sniff(sample, delimiters="".join(_DELIMITERS)).delimiter
    except csv.Error:
        return default
    end = text.find("\n")
    return found if found in (text if end < 0 else text[:end]) else default


def _delimiter_hint(columns: list[str], used: str | None) -> str:
    """A sentence naming another delimiter seen in the header, or ``""``."""
    if used is None:
        return ""
    seen = next((d for d in _DELIMITERS if d != used and any(d in c for c in columns)), None)
    if seen is None:
        return ""
    name = _DELIMITERS[seen]
    return (
        f" The header line contains a {name} ({seen!r}) but the rows could not be read as "
        f"{name}-separated, so it was read as {_DELIMITERS[used]}-separated. If the file is "
        f"{name}-separated, quote every field that contains a {name}, or re-save it as a "
        "comma-separated .csv or tab-separated .tsv."
    )


def read_records(path: str | Path, *, max_bytes: int | None = None) -> list[Record]:
    """Read every row of a CSV, TSV or JSONL file as a :class:`Record`.

    The delimiter of a CSV or TSV file is sniffed (comma, semicolon, tab or pipe), so a
    semicolon-separated export named ``.csv`` reads as it is.
    """
    return _read_table(Path(path), max_bytes)[0]


def column_texts(path: str | Path, column: str, flag: str) -> list[str]:
    """The ``column`` of every row of a CSV, TSV or JSONL file, as texts to run on.

    Raises:
        DataError: a row lacks the column (``flag`` names the option that picks another)
            or holds null there (an empty string is a text: it abstains).
    """
    texts = []
    for rec in read_records(path):
        if column not in rec.fields:
            raise DataError(
                f"no column {column!r} (the file has {', '.join(map(repr, rec.fields))}); "
                f"pass {flag} NAME",
                path=path,
                row=rec.line,
            )
        value = rec.fields[column]
        if value is None:
            raise DataError(
                f"{column!r} is null; give a text (an empty string abstains) or remove the row",
                path=path,
                row=rec.line,
            )
        texts.append(str(value))
    return texts


def _read_table(p: Path, max_bytes: int | None) -> tuple[list[Record], str | None]:
    """The records and the delimiter they were split on (``None`` for JSONL)."""
    if p.is_dir():
        raise DataError("is a folder; pass the data file (CSV, TSV or JSONL) inside it", path=p)
    if not p.is_file():
        raise DataError("no such file; check the path", path=p)
    fmt = _detect_format(p)
    _check_size(p, max_bytes)
    text = decode_utf8(p, p.read_bytes())
    records: list[Record] = []
    if fmt == "jsonl":
        for lineno, line in enumerate(jsonl_lines(text), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON ({exc.msg})", path=p, row=lineno) from exc
            if not isinstance(obj, dict):
                raise DataError("each JSONL line must be an object", path=p, row=lineno)
            if (why := lone_surrogate(line, obj)) is not None:
                raise DataError(why, path=p, row=lineno)
            records.append(Record(obj, lineno))
        return records, None
    _allow_large_fields()
    delimiter = _sniff_delimiter(text, "\t" if fmt == "tsv" else ",")
    # strict: a lenient reader drops the quotes of '"hi" he said' and reads an unclosed
    # quote to the end of the file, changing texts and merging rows without a word.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError("file is empty; it needs a header row", path=p, row=1) from None
    except csv.Error as exc:
        raise DataError(f"malformed {fmt.upper()}: {_quote_hint(str(exc))}", path=p, row=1) from exc
    header = [h.strip() for h in header]
    twice = next((h for i, h in enumerate(header) if h in header[:i]), None)
    if twice is not None:
        raise DataError(
            f"the header names the column {twice!r} twice; only one of them could be read. "
            "Rename or remove the other one.",
            path=p,
            row=1,
        )
    start = reader.line_num + 1  # a quoted field may span lines: report where a row starts
    try:
        for row in reader:
            lineno, start = start, reader.line_num + 1
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DataError(
                    f"row has {len(row)} fields, the header has {len(header)}; "
                    "check the quoting of commas and tabs in the text."
                    + _delimiter_hint(header, delimiter),
                    path=p,
                    row=lineno,
                )
            records.append(Record(dict(zip(header, row, strict=True)), lineno))
    except csv.Error as exc:
        raise DataError(
            f"malformed {fmt.upper()}: {_quote_hint(str(exc))}", path=p, row=start
        ) from exc
    return records, delimiter


def _quote_hint(problem: str) -> str:
    """``problem`` (the csv module's words) with what it means for a quote, and the fix."""
    if "expected after" in problem:
        return (
            f"{problem}: a field that starts with a double quote is read as quoted, and text "
            "goes on after its closing quote. Quote the whole field and double the quotes "
            'inside it ("""hi"" he said"), as a spreadsheet saves it.'
        )
    if "unexpected end of data" in problem:
        return (
            f"{problem}: a double quote opens a field in this row and is never closed, so "
            'every later line would be read into it. Close it, or double it ("") where '
            "it is part of the text."
        )
    return problem


def _column(
    record: Record, column: str, path: Path, role: str, delimiter: str | None = None
) -> str:
    if column not in record.fields:
        available = ", ".join(repr(c) for c in record.fields)
        raise DataError(
            f"missing {role} column {column!r}; the file has {available}. "
            f"Name the column: {role}_column=NAME (CLI: --{role}-column NAME)."
            + _delimiter_hint(list(record.fields), delimiter),
            path=path,
            row=record.line,
        )
    value = record.fields[column]
    if isinstance(value, list | dict):
        raise DataError(
            f"the {role} column {column!r} holds a JSON {type(value).__name__}, not a "
            f"{role}: write one string (or number) per row",
            path=path,
            row=record.line,
        )
    if role == "label" and isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON 1 and 1.0 are one label
    return "" if value is None else str(value)


def read_examples(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    max_bytes: int | None = None,
    validate: bool = True,
) -> list[Example]:
    """Read labelled examples from CSV, TSV or JSONL and validate them.

    Example:
        >>> examples = read_examples("intents.csv", text_column="query")  # doctest: +SKIP
    """
    p = Path(path)
    records, delimiter = _read_table(p, max_bytes)
    if not records:
        raise DataError("file has no rows", path=p)
    examples = [
        Example(
            text=_column(r, text_column, p, "text", delimiter),
            label=_column(r, label_column, p, "label", delimiter).strip(),
            source=f"{p}:{r.line}",
        )
        for r in records
    ]
    if validate:
        validate_examples(examples, path=p)
    return examples


def check_key(
    fields: Mapping[str, Any], key: str, path: Path, line: int, *, also: tuple[str, ...] = ()
) -> None:
    """Refuse a row that lacks ``key`` but has a near miss of it (``label`` for ``labels``).

    So is one with a name other tools use for it (``also``: ``entities`` for ``spans``).
    A missing key reads as "none" (an unlabelled row); a misspelt one would be read so in
    silence, and train the model that the row has nothing.
    """
    if key in fields:
        return
    import difflib

    names = [str(k) for k in fields]
    close = [n for n in names if n in also] or difflib.get_close_matches(
        key, names, n=1, cutoff=0.75
    )
    if close:
        raise DataError(
            f"the row has {close[0]!r} but no {key!r}; rename it to {key!r} (without it the "
            "row reads as having none)",
            path=path,
            row=line,
        )
