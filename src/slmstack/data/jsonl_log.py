"""Append-only JSON Lines files the toolkit writes and resumes (results, rewrites, labels).

One reader for all of them, so that a run killed mid-write resumes the same way
everywhere: the torn last line is cut off (its row is made again), a last row that only
lacks its newline gets one, and a file that is not the writer's is refused and left
untouched, never cut or appended to.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from slmstack.errors import DataError

T = TypeVar("T")


def read_log(
    path: Path,
    parse: Callable[[Any], T],
    *,
    kind: str,
    fix: str,
    damaged: str | None = None,
    opening: bytes | None = None,
) -> list[T]:
    """The rows of ``path`` in order, each line's JSON given to ``parse``.

    ``parse`` raises ``ValueError``, ``KeyError`` or ``TypeError`` on a line that is no
    row (a :class:`~slmstack.errors.DataError` it raises passes through unchanged). A last
    line with no newline is a write cut short when it opens a JSON object after rows (or
    starts with ``opening``, the start of every row, when it is the first line): it is
    truncated away, so the next append starts a line of its own. If it parses whole it
    only lacks its newline, which is added.

    Raises:
        DataError: a line is no row. Before any row: ``is not {kind}``, then ``fix``;
            after rows: ``is damaged``, then ``damaged`` (``fix`` when not given). The
            file is left as it was.
    """
    data = path.read_bytes()
    body_end = data.rfind(b"\n") + 1
    rows: list[T] = []

    def row_of(line: bytes, line_no: int) -> T:
        try:
            return parse(json.loads(line))
        except DataError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            if rows:
                raise DataError(f"is damaged ({exc}); {damaged or fix}", path=path,
                                row=line_no) from exc  # fmt: skip
            raise DataError(f"is not {kind} ({exc}); {fix}", path=path, row=line_no) from exc

    lines = data[:body_end].split(b"\n")[:-1]
    for line_no, line in enumerate(lines, start=1):
        if line.strip():
            rows.append(row_of(line, line_no))
    tail = data[body_end:]
    if not tail.strip():
        return rows
    try:
        json.loads(tail)
    except ValueError:  # not JSON (or not UTF-8) to its end: cut short, or no row at all
        start = tail.lstrip()
        if (rows and start.startswith(b"{")) or (opening and start.startswith(opening)):
            with path.open("r+b") as fh:  # a write cut short: its row is made again
                fh.truncate(body_end)
            return rows
    rows.append(row_of(tail, len(lines) + 1))  # raises when the tail is no row
    with path.open("ab") as end:  # a whole row that lacks only its newline
        end.write(b"\n")
    return rows


__all__ = ["read_log"]
