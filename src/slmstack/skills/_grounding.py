"""Grounded step writing: the prompt, parsing numbered steps, checking them, quoting.

A small generator does not reliably obey "use only the sources", so the skill checks
every step it writes against the passage it cites (its *support*, see :mod:`._support`:
the share of its content words inside a phrase of that passage). Steps below the minimum
are dropped and reported, so an answer can only contain instructions that are traceable
to their citation. When no step is left, :func:`quote_steps` gives the manual's own
sentences instead, each citing its passage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from slmstack.backends.base import ChatMessage
from slmstack.retrieval.chunking import Chunk
from slmstack.skills._support import content_words, support

NOT_IN_SOURCES = "NOT IN SOURCES"
SYSTEM_PROMPT = (
    "You are a support assistant. Solve the user's problem using ONLY the numbered "
    "sources. Write the answer as numbered steps, one per line, like '1. ...'. End each "
    "step with the number of the source it comes from in brackets, like [2]. Do not add "
    f"anything that is not in the sources. If the sources do not help, reply exactly: "
    f"{NOT_IN_SOURCES}."
)
_STEP = re.compile(r"^\s*(?:step\s*)?(\d{1,2})\s*[.):]\s*(.+?)\s*$", re.IGNORECASE)
_BULLET = re.compile(r"^\s*[-*•]\s+(.+?)\s*$")
_CITE = re.compile(r"\[(\d{1,2})\]")
_RECORD = re.compile(r":\d+$")  # the source of a JSONL record: "tickets.jsonl:12"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def build_messages(query: str, chunks: Sequence[Chunk]) -> list[ChatMessage]:
    """System prompt, then the numbered sources and the problem."""
    sources = "\n\n".join(
        f"[{i}] {c.title + ': ' if c.title else ''}{c.text}" for i, c in enumerate(chunks, 1)
    )
    user = f"Sources:\n{sources}\n\nProblem: {query}\n\nNumbered steps:"
    return [ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", user)]


@dataclass(frozen=True)
class Step:
    """One written step, the sources it cites (1-based) and its support in the sources."""

    text: str
    cited: tuple[int, ...]
    support: float


def parse_steps(output: str, chunks: Sequence[Chunk], *, truncated: bool = False) -> list[Step]:
    """Numbered (or bulleted) lines of ``output`` with citations and support.

    A step without a valid citation is attributed to the source that shares the most
    content words with it; citations to sources that were not given are dropped. Support
    is measured against the text of the cited passages, not their headings. Small models
    often copy a source's title ("Paper jam: Open ...") and repeat themselves: the title
    prefix is removed and repeated steps are kept once. When generation was cut at the
    token limit, the last step is incomplete and is dropped.
    """
    vocab = [content_words(c.text + " " + c.title) for c in chunks]
    titles = sorted({c.title for c in chunks if c.title}, key=len, reverse=True)
    lines = output.splitlines()
    if truncated and lines:
        lines = lines[:-1]
    steps: list[Step] = []
    seen: set[str] = set()
    for line in lines:
        m = _STEP.match(line) or _BULLET.match(line)
        if not m or NOT_IN_SOURCES.lower() in line.lower():
            continue
        body = m.group(m.lastindex or 1)
        cited = tuple(
            dict.fromkeys(int(n) for n in _CITE.findall(body) if 1 <= int(n) <= len(chunks))
        )
        text = _CITE.sub("", body).strip().rstrip(" ,;")
        for title in titles:
            if text.lower().startswith(title.lower() + ":"):
                text = text[len(title) + 1 :].strip()
                break
        words = content_words(text)
        key = " ".join(text.lower().split())
        if not words or key in seen or not chunks:
            continue
        seen.add(key)
        if not cited:
            overlap = [len(words & v) for v in vocab]
            cited = (max(range(len(vocab)), key=overlap.__getitem__) + 1,)
        # Against the text only: a heading restated as a step ("The camera freezes") is
        # not an instruction the passage gives.
        steps.append(Step(text, cited, support(text, [chunks[n - 1].text for n in cited])))
    return steps


def manual_passage(chunks: Sequence[Chunk], query: str = "") -> int:
    """The 1-based number of the manual passage to quote for ``query``, else 1.

    Past tickets (JSONL records, cited as ``file:line``) tell what happened once
    ("Resolved: ..."); a manual section lists the steps, so it is what a fallback quotes.
    Among the manual passages, the one whose title and text share the most content words
    with the query wins, ties going to the better-ranked: a retriever may rank a
    document's introduction ("The printer is on the second floor.") above the section
    that answers ("Paper jam"), and quoting the introduction helps nobody.
    """
    wanted = content_words(query)
    best, best_overlap = 0, -1
    for n, chunk in enumerate(chunks, 1):
        if _RECORD.search(chunk.source):
            continue
        overlap = len(wanted & content_words(f"{chunk.title}\n{chunk.text}"))
        if overlap > best_overlap:
            best, best_overlap = n, overlap
    return best or 1


def quote_steps(chunk: Chunk, number: int) -> list[Step]:
    """The passage's own sentences as steps citing source ``number``.

    Lines are kept as they are (manuals write one instruction per line); a long line is
    split at sentence ends.
    """
    steps = []
    for line in chunk.text.splitlines():
        for sentence in _SENTENCE_END.split(line.strip()):
            if content_words(sentence):
                steps.append(Step(sentence, (number,), support(sentence, [chunk.text])))
    return steps


def says_not_in_sources(output: str) -> bool:
    """Whether the generator declared that the sources do not answer the problem."""
    return NOT_IN_SOURCES.lower() in output.lower()
