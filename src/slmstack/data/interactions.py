"""Interaction logs and item text, for recommenders.

An interaction log says which user touched which item, and in which order: a CSV, TSV
or JSONL file with one interaction per row (``user``, ``item`` and an optional ``time``
column; without one, file order is the order), or a RecBole atomic ``.inter`` file as
UniSRec and RecBole ship their splits (``user_id:token``, ``item_id_list:token_seq``,
``item_id:token``: one row per (history, next item); the longest row of a user is their
whole sequence). Item ids in a ``.inter`` file are often row numbers of a
``<dataset>.item2index`` file next to it; when that file exists they are mapped back to
the real ids, so they match the item text.

Item text comes from a CSV, TSV or JSONL file with an id column and one or more text
columns (``title``, ``category``, ``description`` by default; the present ones are
joined with ``". "``), or from a RecBole ``.text`` file (``item_id:token``,
``text:token_seq``).

Every problem is a :class:`~slmstack.errors.DataError` with the file and line, and says
how to fix it.

Example:
    >>> log = read_interaction_log("clicks.csv", items="products.jsonl")  # doctest: +SKIP
    >>> log[0].user, log[0].items[-3:]  # doctest: +SKIP
    ('u17', ('B001', 'B007', 'B002'))
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

from slmstack.data._recbole import atomic_rows, item_index, need
from slmstack.data.readers import read_records
from slmstack.errors import DataError, DataWarning

__all__ = [
    "DEFAULT_TEXT_COLUMNS",
    "InteractionLog",
    "UserHistory",
    "format_history",
    "parse_history",
    "read_interaction_log",
    "read_interactions",
    "read_items",
]

DEFAULT_TEXT_COLUMNS = ("title", "category", "description")
_ATOMIC = (".inter", ".text", ".item")


@dataclass(frozen=True)
class UserHistory:
    """One user's items, oldest first; ``source`` is ``file:line`` of their first row."""

    user: str
    items: tuple[str, ...]
    source: str = ""


@dataclass(frozen=True)
class InteractionLog(Sequence[UserHistory]):
    """User histories plus the text of every item: what a recommender trains on.

    A sequence of :class:`UserHistory`; ``items`` maps item id → text and may hold
    items nobody interacted with yet (they can still be recommended from their text).
    """

    histories: tuple[UserHistory, ...]
    items: Mapping[str, str] = field(default_factory=dict)

    @overload
    def __getitem__(self, index: int) -> UserHistory: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[UserHistory]: ...
    def __getitem__(self, index: int | slice) -> UserHistory | Sequence[UserHistory]:
        return self.histories[index]

    def __len__(self) -> int:
        return len(self.histories)

    def __iter__(self) -> Iterator[UserHistory]:
        return iter(self.histories)


def parse_history(text: str) -> list[str]:
    """Item ids of a history text: ids separated by spaces or commas, oldest first."""
    return [t for t in text.replace(",", " ").split() if t]


def format_history(items: Sequence[str]) -> str:
    """The history text of ``items`` (the input format of ``Recommender.predict``)."""
    return " ".join(items)


def _check_id(value: str, what: str, path: Path, line: int) -> str:
    item = value.strip()
    if not item:
        raise DataError(f"empty {what}; every row needs one", path=path, row=line)
    if what.startswith("item") and any(c.isspace() or c == "," for c in item):  # in a history
        raise DataError(
            f"{what} {item!r} contains a space or comma; histories are written as ids "
            "separated by spaces, so ids cannot contain them. Replace them (e.g. with '_').",
            path=path,
            row=line,
        )
    return item


def _text(value: object) -> str:
    """A field as text: ``None`` is empty, the number ``0`` is ``"0"`` (an id like any)."""
    return "" if value is None else str(value)


def _read_inter(path: Path) -> list[UserHistory]:
    header, rows = atomic_rows(path)
    index = item_index(path)

    def real(value: str, line: int) -> str:
        item = _check_id(value, "item id", path, line)
        if index is None:
            return item
        if item not in index:
            raise DataError(
                f"item {item!r} is not in {path.name.split('.')[0]}.item2index next to the "
                "file; the two files come from different datasets. Use matching files.",
                path=path,
                row=line,
            )
        return index[item]

    if "item_id_list" in header:  # (history, next item) rows: keep each user's longest
        u, h, t = need(
            header,
            ["user_id", "item_id_list", "item_id"],
            path,
            "Expected user_id, item_id_list and item_id.",
        )
        longest: dict[str, tuple[tuple[str, ...], int]] = {}
        for line, cells in rows:
            user = _check_id(cells[u], "user id", path, line)
            seq = (*(real(x, line) for x in cells[h].split()), real(cells[t], line))
            if len(seq) > len(longest.get(user, ((), 0))[0]):
                longest[user] = (seq, longest.get(user, ((), line))[1])
        return [UserHistory(user, seq, f"{path}:{line}") for user, (seq, line) in longest.items()]
    u, i = need(header, ["user_id", "item_id"], path, "Expected user_id and item_id.")
    ts = header.index("timestamp") if "timestamp" in header else None
    events = [
        (
            _check_id(c[u], "user id", path, line),
            real(c[i], line),
            _time(c[ts], path, line) if ts is not None else float(n),
            line,
        )
        for n, (line, c) in enumerate(rows)
    ]
    return _group(events, path, timed=ts is not None)


def _time(value: str, path: Path, line: int) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    from datetime import datetime

    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        raise DataError(
            f"time {value!r} is neither a number nor an ISO date (2024-05-01T10:00); "
            "fix the value or drop the time column to use file order.",
            path=path,
            row=line,
        ) from None


def _group(
    events: list[tuple[str, str, float, int]], path: Path, *, timed: bool = False
) -> list[UserHistory]:
    """Histories in order of first appearance, each sorted by (time, file order).

    With real times (``timed``), a row equal to an earlier one in user, item and time is
    a copy (a log appended twice), not a second interaction: it is dropped, with a
    :class:`DataWarning` that counts them. It would otherwise be its own next item, and
    the held-out next item of a history would be one its history already holds.
    """
    by_user: dict[str, list[tuple[float, int, str]]] = {}
    first: dict[str, int] = {}
    seen: set[tuple[str, str, float]] = set()
    copies = 0
    for n, (user, item, time, line) in enumerate(events):
        if timed:
            if (user, item, time) in seen:
                copies += 1
                continue
            seen.add((user, item, time))
        by_user.setdefault(user, []).append((time, n, item))
        first.setdefault(user, line)
    if copies:
        warnings.warn(
            f"{path}: dropped {copies} row{'' if copies == 1 else 's'} repeating an earlier "
            "one (same user, item and time)",
            DataWarning,
            stacklevel=3,
        )
    return [
        UserHistory(user, tuple(item for _, _, item in sorted(rows)), f"{path}:{first[user]}")
        for user, rows in by_user.items()
    ]


def read_interactions(
    path: str | Path,
    *,
    user_column: str = "user",
    item_column: str = "item",
    time_column: str | None = "time",
) -> list[UserHistory]:
    """User histories from an interaction log (CSV/TSV/JSONL, or RecBole ``.inter``).

    Args:
        path: the log file.
        user_column: the user id column (CSV/TSV/JSONL).
        item_column: the item id column (CSV/TSV/JSONL).
        time_column: a number or ISO date that orders each user's items; when the file
            has none, file order is used (refused if another column looks like a time,
            e.g. ``timestamp``); ``None`` or ``""``: file order. Ties keep file order.
    """
    p = Path(path)
    if p.suffix.lower() in _ATOMIC:
        histories = _read_inter(p)
    else:
        records = read_records(p)
        if not records:
            raise DataError("file has no rows", path=p)
        columns = list(records[0].fields)
        for name, flag in ((user_column, "user_column"), (item_column, "item_column")):
            if name not in columns:
                raise DataError(
                    f"missing column {name!r}; the file has {columns}. Rename the column, or "
                    f"pass {flag}=NAME (CLI: --{flag.replace('_', '-')} NAME, or --read "
                    f"{flag}=NAME).",
                    path=p,
                    row=_header_line(p, records[0].line),
                )
        has_time = bool(time_column) and time_column in columns
        if time_column and not has_time:
            _refuse_unused_time(columns, time_column, p, _header_line(p, records[0].line))
        events = []
        for n, r in enumerate(records):
            user = _check_id(_text(r.fields.get(user_column)), "user id", p, r.line)
            item = _check_id(_text(r.fields.get(item_column)), "item id", p, r.line)
            raw = r.fields.get(time_column) if has_time else None  # type: ignore[arg-type]
            when = _time(str(raw), p, r.line) if raw not in (None, "") else float(n)
            if has_time and raw in (None, ""):
                raise DataError(
                    f"empty {time_column!r}; give every row a time, or none (file order).",
                    path=p,
                    row=r.line,
                )
            events.append((user, item, when, r.line))
        histories = _group(events, p, timed=has_time)
    if not histories:
        raise DataError("file has no interactions", path=p)
    return histories


_TIME_WORDS = frozenset({"time", "timestamp", "date", "datetime", "ts"})


def _refuse_unused_time(columns: list[str], time_column: str, path: Path, line: int) -> None:
    """Refuse a log whose time column has another name (MovieLens: ``timestamp``)."""
    # In file order, a log sorted by user then item id would hold out each largest id.
    words = {c: re.split(r"[^a-z0-9]", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", c).lower())
             for c in columns}  # fmt: skip
    timed = [c for c in columns if _TIME_WORDS.intersection(words[c])]
    if timed:
        raise DataError(
            f"no {time_column!r} column but {timed[0]!r}, which looks like the time; pass "
            f"time_column={timed[0]} (CLI: --time-column {timed[0]}, or --read time_column="
            f"{timed[0]}) to order each user's items by it, or None ('') for file order.",
            path=path,
            row=line,
        )


def read_items(
    path: str | Path,
    *,
    id_column: str = "item",
    text_columns: Sequence[str] | str = DEFAULT_TEXT_COLUMNS,
) -> dict[str, str]:
    """Item id → text, from CSV/TSV/JSONL (text columns joined) or a RecBole ``.text`` file.

    Args:
        path: the item file.
        id_column: the item id column (CSV/TSV/JSONL).
        text_columns: the columns whose non-empty values make the item text, in order;
            a comma-separated string is accepted (``--read text_columns=title,brand``).
            Columns missing from the file are skipped, but at least one must exist.
    """
    p = Path(path)
    names = (
        [c.strip() for c in text_columns.split(",")]
        if isinstance(text_columns, str)
        else list(text_columns)
    )
    rows: list[tuple[int, str, list[str]]] = []
    if p.suffix.lower() in _ATOMIC:
        header, atomic = atomic_rows(p)
        i, t = need(header, ["item_id", "text"], p, "A RecBole .text file has item_id and text.")
        rows = [(line, c[i], [c[t]]) for line, c in atomic]
    else:
        records = read_records(p)
        if not records:
            raise DataError("file has no rows", path=p)
        columns = list(records[0].fields)
        present = [c for c in names if c in columns]
        if id_column not in columns or not present:
            raise DataError(
                f"needs an id column {id_column!r} and at least one text column of {names}; "
                f"the file has {columns}. Pass id_column=NAME / text_columns=a,b "
                "(CLI: --id-column NAME --text-columns a,b, or --read text_columns=a,b).",
                path=p,
                row=_header_line(p, records[0].line),
            )
        rows = [
            (
                r.line,
                _text(r.fields.get(id_column)),
                [_text(r.fields.get(c)) for c in present],
            )
            for r in records
        ]
    items: dict[str, str] = {}
    for line, raw_id, parts in rows:
        item = _check_id(raw_id, "item id", p, line)
        text = ". ".join(s.strip().rstrip(".") for s in parts if s.strip())
        if not text:
            raise DataError(
                f"item {item!r} has no text; give it a title or description", path=p, row=line
            )
        if item in items:
            raise DataError(f"item {item!r} appears twice; keep one row per item", path=p, row=line)
        items[item] = text
    if not items:
        raise DataError("file has no items", path=p)
    return items


def _header_line(path: Path, first: int) -> int:
    """Where a column problem is: the header of a CSV/TSV file, else the first record."""
    return 1 if path.suffix.lower() in (".csv", ".tsv") else first


def _sibling_text(path: Path) -> Path | None:
    candidate = path.parent / f"{path.name.split('.')[0]}.text"
    return candidate if path.suffix.lower() == ".inter" and candidate.is_file() else None


def read_interaction_log(
    path: str | Path,
    *,
    items: str | Path | None = None,
    user_column: str = "user",
    item_column: str = "item",
    time_column: str | None = "time",
    id_column: str = "item",
    text_columns: Sequence[str] | str = DEFAULT_TEXT_COLUMNS,
) -> InteractionLog:
    """An :class:`InteractionLog`: the histories of ``path`` and the item text of ``items``.

    ``items`` may be left out only for a RecBole ``.inter`` file with a ``<dataset>.text``
    file next to it. Every item in the log must have text.
    """
    p = Path(path)
    item_file = Path(items) if items is not None else _sibling_text(p)
    if item_file is None:
        raise DataError(
            "no item text given; pass the item file (CLI: --items FILE, or --read "
            "items=FILE), a CSV/TSV/JSONL with an id column and title/category/description.",
            path=p,
        )
    histories = read_interactions(
        p, user_column=user_column, item_column=item_column, time_column=time_column
    )
    texts = read_items(item_file, id_column=id_column, text_columns=text_columns)
    missing = sorted({i for h in histories for i in h.items if i not in texts})
    if missing:
        first = next(h for h in histories if any(i in missing for i in h.items))
        raise DataError(
            f"{len(missing)} item(s) of the log have no text in {item_file}, e.g. "
            f"{missing[:5]} (first used at {first.source}). Add them to the item file or "
            "drop their interactions.",
            path=p,
        )
    return InteractionLog(tuple(histories), texts)
