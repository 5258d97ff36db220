"""The rows of a batch job: JSONL, CSV/TSV, Parquet, or a folder or glob of text documents.

Every row gets a stable id that does not depend on the working folder or on how the job
was split: ``name:LINE`` for JSONL and CSV/TSV (the 1-based line the row starts on, the
CSV header being line 1), ``name:ROW`` for Parquet (the 1-based row), and ``name`` for a
text document, where ``name`` is the file's path relative to the folder given (or to the
glob's fixed prefix, or the file's own name for a single file). The id is what resume
matches on, and the workflow's idempotency key is built from it.

A row that cannot be read (a line that is not JSON, an object without the text field, a
CSV row with the wrong number of fields, a document that is not UTF-8) becomes a row with
an ``error``: it goes to the errors file and the rest of the job goes on. A problem with
the whole file (no such column anywhere, an unknown format) is a :class:`DataError` before
anything runs, since every row would fail the same way.
"""

from __future__ import annotations

import csv
import glob
import io
import json
from dataclasses import dataclass
from pathlib import Path

from slmstack.data.utf8 import jsonl_lines, lone_surrogate, read_utf8
from slmstack.errors import DataError, MissingDependencyError

TABLES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
_MAGIC = frozenset("*?[")


@dataclass(frozen=True)
class Row:
    """One input of a batch job.

    Attributes:
        id: stable id (see the module docstring); unique within a job.
        text: the text to run on; for an unreadable row, the raw line (to show in errors).
        error: why the row cannot be run, or ``""`` when it can.
    """

    id: str
    text: str
    error: str = ""


def input_files(source: str | Path) -> list[tuple[Path, str]]:
    """``(file, name)`` of every file ``source`` (a file, folder or glob) names, sorted.

    Hidden files (a name starting with ``.``) inside a folder or glob are skipped.

    Raises:
        DataError: nothing matches.
    """
    text = str(source)
    path = Path(text)
    if path.is_file():
        return [(path, path.name)]
    if path.is_dir():
        base, matches = path, [p for p in path.rglob("*") if p.is_file()]
    elif _MAGIC & set(text):
        parts = path.parts
        fixed = next((i for i, part in enumerate(parts) if _MAGIC & set(part)), len(parts))
        base = Path(*parts[:fixed]) if fixed else Path(".")
        matches = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
    else:
        raise DataError("no such file, folder or glob; check the --input path", path=path)
    found = [
        (p, p.relative_to(base).as_posix())
        for p in matches
        if not any(part.startswith(".") for part in p.relative_to(base).parts)
    ]
    if not found:
        raise DataError("matches no files; check the --input folder or glob", path=path)
    return sorted(found, key=lambda pair: pair[1])


def read_rows(source: str | Path, text_field: str = "text") -> list[Row]:
    """Every row of every file ``source`` names (see the module docstring).

    Args:
        source: a file, a folder (every file under it) or a glob (``docs/**/*.txt``).
            ``.jsonl``/``.ndjson``, ``.csv``, ``.tsv`` and ``.parquet`` files hold rows;
            any other file is one text document.
        text_field: the JSONL key or CSV/Parquet column of the text.

    Raises:
        DataError: nothing matches, two rows share an id, or a table lacks ``text_field``.

    Example:
        >>> rows = read_rows("tickets/*.jsonl")  # doctest: +SKIP
        >>> rows[0].id, rows[0].text  # doctest: +SKIP
        ('monday.jsonl:1', 'my card was charged twice')
    """
    rows: list[Row] = []
    for path, name in input_files(source):
        kind = TABLES.get(path.suffix.lower())
        if kind == "jsonl":
            rows.extend(_jsonl(path, name, text_field))
        elif kind in ("csv", "tsv"):
            rows.extend(_csv(path, name, text_field, "\t" if kind == "tsv" else ","))
        elif kind == "parquet":
            rows.extend(_parquet(path, name, text_field))
        else:
            rows.append(_document(path, name))
    seen: set[str] = set()
    for row in rows:
        if row.id in seen:
            raise DataError(f"two rows have the id {row.id!r}; pass inputs with distinct names")
        seen.add(row.id)
    return rows


def _jsonl(path: Path, name: str, field: str) -> list[Row]:
    rows = []
    for n, line in enumerate(jsonl_lines(_utf8(path)), start=1):
        if not line.strip():
            continue
        rid = f"{name}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append(Row(rid, line, f"not valid JSON ({exc.msg}); fix or remove the line"))
            continue
        if (why := lone_surrogate(line, obj)) is not None:
            rows.append(Row(rid, line, why))
            continue
        if isinstance(obj, str):
            rows.append(Row(rid, obj))
        elif isinstance(obj, dict) and isinstance(obj.get(field), str):
            rows.append(Row(rid, obj[field]))
        else:
            why = (
                f"a line must be a JSON string or an object with a string {field!r}; "
                "pass --text-field NAME for another key"
            )
            rows.append(Row(rid, line, why))
    return rows


def _csv(path: Path, name: str, field: str, delimiter: str) -> list[Row]:
    # Rows are split on the delimiter the suffix names: comma for .csv, tab for .tsv.
    reader = csv.reader(io.StringIO(_utf8(path), newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return []
    if field not in header:
        raise DataError(
            f"no column {field!r} (columns: {', '.join(header)}); pass --text-field NAME",
            path=path,
            row=1,
        )
    at = header.index(field)
    rows = []
    line = reader.line_num + 1  # the line the next record starts on
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rows.append(Row(f"{name}:{line}", "", f"malformed row: {exc}"))
            line = reader.line_num + 1
            continue
        rid = f"{name}:{line}"
        line = reader.line_num + 1
        if not record or all(not c.strip() for c in record):
            continue
        if len(record) != len(header):
            raw = delimiter.join(record)
            why = f"the row has {len(record)} fields and the header {len(header)}; quote them"
            rows.append(Row(rid, raw, why))
        else:
            rows.append(Row(rid, record[at]))
    return rows


def _parquet(path: Path, name: str, field: str) -> list[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError("pyarrow", "ray", "Reading Parquet input") from exc
    schema = pq.read_schema(path)
    if field not in schema.names:
        raise DataError(
            f"no column {field!r} (columns: {', '.join(schema.names)}); pass --text-field NAME",
            path=path,
        )
    values = pq.read_table(path, columns=[field]).column(field).to_pylist()
    rows = []
    for n, value in enumerate(values, start=1):
        if isinstance(value, str):
            rows.append(Row(f"{name}:{n}", value))
        else:
            why = f"{field!r} is {type(value).__name__}, not a string"
            rows.append(Row(f"{name}:{n}", "" if value is None else str(value), why))
    return rows


def _document(path: Path, name: str) -> Row:
    raw = path.read_bytes()
    try:
        return Row(name, raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        why = f"not UTF-8 at byte {exc.start}; re-save the file as UTF-8"
        return Row(name, raw.decode("utf-8", errors="replace"), why)


def _utf8(path: Path) -> str:
    return read_utf8(path)
