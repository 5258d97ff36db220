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


def jsonl_lines(text: str) -> list[str]:
    r"""The lines of a JSONL text, split on ``\n`` only (and a ``\r`` before it dropped).

    Not :meth:`str.splitlines`: that also ends a line at U+2028, U+0085 and other
    separators, which ``json.dumps(..., ensure_ascii=False)`` writes raw inside strings,
    so a record whose text holds one was cut in two and read as invalid JSON.

    Example:
        >>> jsonl_lines('{"t": "a\u2028b"}\r\n{"t": "c"}\n')
        ['{"t": "a\u2028b"}', '{"t": "c"}', '']
    """
    return [line.removesuffix("\r") for line in text.split("\n")]


def text_lines(text: str) -> list[str]:
    r"""The lines of a text file, as :meth:`str.splitlines` gives them but ended at ``\n`` only.

    A ``\r`` before the ``\n`` is dropped and a final newline ends the last line (it
    starts no empty one). A line may hold U+2028, U+0085 and the other separators that
    :meth:`str.splitlines` would also cut at.

    Example:
        >>> text_lines("a\u2028b\r\nc\n")
        ['a\u2028b', 'c']
    """
    lines = jsonl_lines(text)
    return lines[:-1] if lines and lines[-1] == "" else lines


def lone_surrogate(line: str, obj: object) -> str | None:
    r"""What is wrong when the decoded JSON line ``obj`` holds a lone UTF-16 surrogate.

    JSON lets a line write ``"\ud83d"`` (half of an emoji's pair), which decodes to a
    string no UTF-8 output can hold: every later write of it fails. ``None`` when there is
    none (the common case is found by looking for the escape in ``line``).
    """
    if "\\ud" not in line.lower():
        return None
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            bad = next((ch for ch in value if "\ud800" <= ch <= "\udfff"), None)
            if bad is not None:
                return (
                    f"a string holds a lone UTF-16 surrogate (\\u{ord(bad):04x}), half of a "
                    "character outside the Basic Multilingual Plane (an emoji, say) that no "
                    "UTF-8 text can hold; the tool that wrote the line split the pair. Write "
                    "the character whole (or both halves of its escape), or remove it"
                )
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None
