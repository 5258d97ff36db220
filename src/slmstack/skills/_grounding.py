"""Grounded step writing: the prompt, parsing numbered steps, and checking their support.

A small generator does not reliably obey "use only the sources", so the skill checks
every step it writes: the share of the step's content words that occur in the
retrieved passages (its *support*). Steps below the minimum are dropped and reported,
so an answer can only contain instructions that are traceable to the sources.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from slmstack.backends.base import ChatMessage
from slmstack.retrieval.chunking import Chunk

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
_WORD = re.compile(r"[a-z0-9]+")
# Function words carry no content: a step is supported by what it *says*, not by "the".
_STOP = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "do",
        "does", "for", "from", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its",
        "may", "me", "might", "must", "my", "no", "not", "of", "on", "once", "or", "our",
        "should", "so", "such", "that", "the", "their", "then", "there", "these", "this", "to",
        "up", "was", "we", "were", "what", "when", "where", "which", "while", "will", "with",
        "you", "your", "yours", "step", "steps", "first", "next", "finally", "also", "any",
        "all",
    }
)  # fmt: skip


def build_messages(query: str, chunks: Sequence[Chunk]) -> list[ChatMessage]:
    """System prompt, then the numbered sources and the problem."""
    sources = "\n\n".join(
        f"[{i}] {c.title + ': ' if c.title else ''}{c.text}" for i, c in enumerate(chunks, 1)
    )
    user = f"Sources:\n{sources}\n\nProblem: {query}\n\nNumbered steps:"
    return [ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", user)]


def content_words(text: str) -> set[str]:
    """Lower-cased words of 2+ characters that are not function words."""
    return {w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in _STOP}


@dataclass(frozen=True)
class Step:
    """One written step, the sources it cites (1-based) and its support in the sources."""

    text: str
    cited: tuple[int, ...]
    support: float


def parse_steps(output: str, chunks: Sequence[Chunk], *, truncated: bool = False) -> list[Step]:
    """Numbered (or bulleted) lines of ``output`` with citations and support.

    A step without a valid citation is attributed to the source that shares the most
    content words with it; citations to sources that were not given are dropped. Small
    models often copy a source's title ("Paper jam: Open ...") and repeat themselves:
    the title prefix is removed and repeated steps are kept once. When generation was
    cut at the token limit, the last step is incomplete and is dropped.
    """
    vocab = [content_words(c.text + " " + c.title) for c in chunks]
    everything = set().union(*vocab) if vocab else set()
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
        if not words or key in seen:
            continue
        seen.add(key)
        support = len(words & everything) / len(words)
        if not cited and vocab:
            overlap = [len(words & v) for v in vocab]
            cited = (max(range(len(vocab)), key=overlap.__getitem__) + 1,)
        steps.append(Step(text, cited, support))
    return steps


def says_not_in_sources(output: str) -> bool:
    """Whether the generator declared that the sources do not answer the problem."""
    return NOT_IN_SOURCES.lower() in output.lower()
