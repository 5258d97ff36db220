"""RecBole atomic files (``.inter``, ``.text``, ``.item2index``): tab-separated rows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from slmstack.data.utf8 import read_utf8, text_lines
from slmstack.errors import DataError


def atomic_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header names (``:type`` suffixes removed) and tab-split rows of a RecBole file."""
    if not path.is_file():
        raise DataError("no such file; check the path", path=path)
    # A row ends at a newline only, as RecBole reads it: str.splitlines() would also cut
    # at U+2028 and U+0085, which scraped item titles hold. A byte-order mark is dropped.
    lines = [line.removesuffix("\r") for line in read_utf8(path).split("\n")]
    if not lines[0].strip():
        raise DataError("file is empty; it needs a header row", path=path, row=1)
    header = [h.strip().split(":")[0] for h in lines[0].split("\t")]
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise DataError(
                f"row has {len(cells)} tab-separated fields, the header has {len(header)} "
                f"({', '.join(header)}); RecBole atomic files are tab-separated with no quoting.",
                path=path,
                row=lineno,
            )
        rows.append((lineno, cells))
    return header, rows


def need(header: list[str], names: Sequence[str], path: Path, fix: str) -> list[int]:
    missing = [n for n in names if n not in header]
    if missing:
        raise DataError(
            f"missing column(s) {missing}; the file has {header}. {fix}", path=path, row=1
        )
    return [header.index(n) for n in names]


def item_index(path: Path) -> dict[str, str] | None:
    """Row number → item id from ``<dataset>.item2index`` next to a ``.inter`` file."""
    index = path.parent / f"{path.name.split('.')[0]}.item2index"
    if not index.is_file():
        return None
    mapping: dict[str, str] = {}
    for lineno, line in enumerate(text_lines(read_utf8(index)), start=1):
        parts = line.split("\t")
        if len(parts) != 2:
            raise DataError("expected 'item_id<TAB>index'", path=index, row=lineno)
        item, number = parts[0].strip(), parts[1].strip()
        if number in mapping and mapping[number] != item:
            raise DataError(
                f"index {number} is given to {mapping[number]!r} and to {item!r}; each index "
                "names one item. Use the item2index file written with the .inter file.",
                path=index,
                row=lineno,
            )
        mapping[number] = item
    return mapping
