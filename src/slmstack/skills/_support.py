"""Is a written step supported by the passage it cites? Shared two-word phrases.

A step's *support* is the share of its content words (lower-cased, lightly stemmed, no
function words) that the cited passage contains **inside a shared phrase**: the same two
content words, in the same order, next to each other in one sentence once function words
are removed.
A step of one content word is supported when the passage has that word.

Why phrases and not a bag of words: a small generator recombines the words of a
passage into instructions it never gave. SmolLM2-135M answered the blinking-red-light
question with "The speaker keeps blinking red, unplugging it again, and then unplugging
it again": every content word occurs in the manual's passage, so bag-of-words support is
1.0, but only "keeps blinking red" is a phrase of the passage, so phrase support is 3/8.
"The speaker should be unplugged from the router" scores 0 (the manual says "unplug the
speaker", and says nothing about the router there). Faithful short paraphrases keep
high support, because dropping function words makes "Unplug the speaker for 30 seconds"
and "unplug speaker 30 seconds" the same phrase. The price: a faithful step that
reorders the passage ("the speaker must be unplugged") loses support, so the measure
errs towards dropping, and the troubleshooter then quotes the manual instead. On the
judged support-desk set (``bench/troubleshoot.py``), 74% of SmolLM2's steps pass at 0.5,
against 90% under bag-of-words support. What it cannot see: a step made of two real
phrases from different sentences ("remove Brightlane Earbuds" + "earbuds in the case"),
and a supported step that answers another question than the one asked.

Negation: "Do not open the toner door while printing" shares every phrase with the
step "Open the toner door while printing", which says the opposite. So each content word
carries whether a negator ("not", "no", "never", "cannot", "-n't") stands within the three
words before it in its clause, and a pair of the step matches a pair of the passage only
when both are negated or neither is. "If the light does not turn off, unplug the
speaker" still supports "Unplug the speaker": the comma ends the negated clause.

Entailment with an NLI model would judge meaning rather than wording, but no NLI
weights are available offline here, and it would cost a model call per step; this costs
microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import pairwise

_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script (Замятие, 紙詰まり)
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n")
_CLAUSE = re.compile(r"[,;:.!?()\n]")
_NOT = re.compile(r"n['’]t\b", re.IGNORECASE)  # "don't" -> "do not"
NEGATORS = frozenset({"not", "no", "never", "cannot", "nothing", "nobody"})
_SCOPE = 3  # content words a negator reaches
# Function words carry no content: a step is supported by what it *says*, not by "the".
STOP = frozenset(
    {
        "a", "about", "after", "an", "and", "are", "as", "at", "be", "been", "but", "by",
        "can", "could", "do", "does", "for", "from", "has", "have", "how", "i", "if", "in",
        "into", "is", "it", "its", "may", "me", "might", "must", "my", "no", "not", "of",
        "on", "once", "or", "our", "should", "so", "such", "than", "that", "the", "their",
        "them", "then", "there", "these", "they", "this", "to", "up", "was", "we", "were",
        "what", "when", "where", "which", "while", "will", "with", "you", "your", "yours",
        "step", "steps", "first", "next", "finally", "also", "any", "all",
    }
)  # fmt: skip
_KEEP_DOUBLE = frozenset("lsz")  # "install", "press", "buzz" keep their double letter


def stem(word: str) -> str:
    """A light English stemmer: plural, -ing, -ed and a final -e removed.

    Enough to match "unplugging", "unplugged" and "unplug", or "batteries" and
    "battery"; it never shortens a word below three letters.
    """
    w = word
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us")):
        w = w[:-1]
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            if len(w) > 3 and w[-1] == w[-2] and w[-1] not in _KEEP_DOUBLE | set("aeiou"):
                w = w[:-1]  # "unplugg" -> "unplug"
            break
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def content_sequence(text: str) -> list[str]:
    """Stemmed content words of ``text``, in order (words of 2+ characters, no stop words)."""
    return [stem(w) for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOP]


def content_words(text: str) -> set[str]:
    """The set of :func:`content_sequence`."""
    return set(content_sequence(text))


def _negated_sequence(text: str) -> list[tuple[str, bool]]:
    """:func:`content_sequence` with, for each word, whether a negator reaches it."""
    out: list[tuple[str, bool]] = []
    for clause in _CLAUSE.split(_NOT.sub(" not", text.lower())):
        left = 0  # content words the last negator still reaches
        for word in _WORD.findall(clause):
            if word in NEGATORS:
                left = _SCOPE
            elif len(word) > 1 and word not in STOP:
                out.append((stem(word), left > 0))
                left = max(0, left - 1)
    return out


Pair = tuple[str, str, bool]  # two adjacent content words, and whether they are negated


def _pairs(seq: list[tuple[str, bool]]) -> set[Pair]:
    return {(a, b, na or nb) for (a, na), (b, nb) in pairwise(seq)}


def phrases(texts: Iterable[str]) -> tuple[set[str], set[Pair]]:
    """Content words of the passages, and their ordered adjacent pairs within a sentence."""
    vocab: set[str] = set()
    pairs: set[Pair] = set()
    for text in texts:
        for sentence in _SENTENCE.split(text):  # a phrase does not run across sentences
            seq = _negated_sequence(sentence)
            vocab.update(word for word, _ in seq)
            pairs.update(_pairs(seq))
    return vocab, pairs


def support(step: str, passages: Iterable[str]) -> float:
    """Share of ``step``'s content words inside a content-word pair that a passage has.

    Example:
        >>> support("Unplug the speaker for 30 seconds.",
        ...         ["Unplug the speaker for 30 seconds and plug it in again."])
        1.0
        >>> support("The speaker should be unplugged from the router.",
        ...         ["Unplug the speaker for 30 seconds and plug it in again."])
        0.0
        >>> support("Open the toner door while printing.",
        ...         ["Do not open the toner door while printing."])
        0.0
    """
    seq = _negated_sequence(step)
    if not seq:
        return 0.0
    vocab, pairs = phrases(passages)
    if len(seq) == 1:
        return 1.0 if seq[0][0] in vocab else 0.0
    covered = [False] * len(seq)
    for i, ((a, na), (b, nb)) in enumerate(pairwise(seq)):
        if (a, b, na or nb) in pairs:
            covered[i] = covered[i + 1] = True
    return sum(covered) / len(seq)
