"""Reading a user's text file as UTF-8, or saying where it is not and how to fix it."""

from __future__ import annotations

from pathlib import Path

from slmstack.errors import DataError


def decode_utf8(path: Path, raw: bytes) -> str:
    """``raw`` (the bytes of ``path``) as text; a leading byte-order mark is dropped.

    Raises:
        DataError: naming the file, the line and the bytes that are not UTF-8, and the fix.
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start : exc.start + 4]
        raise DataError(
            f"bytes {bad!r} at byte {exc.start} are not UTF-8. Re-save the file as UTF-8 "
            "(for example: iconv -f latin1 -t utf-8 in > out).",
            path=path,
            row=line,
        ) from exc


def read_utf8(path: str | Path) -> str:
    """The text of the file at ``path`` (see :func:`decode_utf8`)."""
    path = Path(path)
    return decode_utf8(path, path.read_bytes())
