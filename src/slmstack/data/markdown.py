"""Markdown headings, as the knowledge-base reader and the manual chunker both split on."""

from __future__ import annotations

import re

HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)", re.MULTILINE)


def headings(text: str) -> list[re.Match[str]]:
    r"""The ATX headings of ``text`` (``## Title``), in order, outside fenced code blocks.

    A ``# comment`` line inside a fenced block of shell or Python is code, not a heading:
    split there, an answer or a manual section was cut short and the comment became a
    question of its own.

    Example:
        >>> [h.group(2) for h in headings("# Run\n```sh\n# stop it first\n```\n# Done\n")]
        ['Run', 'Done']
    """
    fences = [m.start() for m in _FENCE.finditer(text)]
    spans = list(zip(fences[::2], [*fences[1::2], len(text)], strict=False))  # open to close
    return [h for h in HEADING.finditer(text) if not any(a < h.start() < b for a, b in spans)]


__all__ = ["HEADING", "headings"]
