"""Token-level helpers of the entity tagger: words, casing, windows, decoding.

Kept apart from the skill so each piece can be tested on its own: how a text becomes
sub-word ids grouped into words, how long inputs become overlapping windows and how
their logits are merged back, and how tag probabilities become valid IOB2 spans.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.data.tagging import TaggedExample
from slmstack.types import Span

# Casing classes. The default MiniLM tokenizer lowercases, which throws away the
# strongest cue for names; feeding the original casing of each word next to the
# encoder's vector gives it back (Reimers & Gurevych, 2017, casing features).
CASE_CLASSES = 6  # padding, no letters, lower, Title, UPPER, mIxEd
IGNORE = -100  # label of sub-words that are not the first of a word


def casing(word: str) -> int:
    """The casing class of a word (see ``CASE_CLASSES``)."""
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return 1
    if all(c.islower() for c in letters):
        return 2
    if all(c.isupper() for c in letters):
        return 4
    if letters[0].isupper() and all(c.islower() or not c.isupper() for c in letters[1:]):
        return 3
    return 5


@dataclass(frozen=True)
class Encoded:
    """A text as sub-word ids grouped into words (the tokenizer's pre-tokens).

    Attributes:
        ids: sub-word ids, without special tokens.
        case: casing class of the word each sub-word belongs to.
        word_first: index of the first sub-word of each word.
        word_spans: character offsets ``(start, end)`` of each word in the text.
    """

    ids: list[int]
    case: list[int]
    word_first: list[int]
    word_spans: list[tuple[int, int]]


def encode(tokenizer: Any, texts: Sequence[str]) -> list[Encoded]:
    """Tokenize texts with character offsets and group sub-words into words.

    ``tokenizer`` is a Hugging Face fast tokenizer (the torch skill) or a Rust
    ``tokenizers.Tokenizer`` (the exported skill): both give the same ids, offsets and
    word ids, so an exported tagger sees exactly the words its torch skill saw.
    """
    if hasattr(tokenizer, "encode_batch"):  # tokenizers.Tokenizer, padding/truncation off
        batch = tokenizer.encode_batch(list(texts), add_special_tokens=False)
        rows = [(list(e.ids), list(e.offsets), list(e.word_ids)) for e in batch]
    else:
        enc = tokenizer(
            list(texts), add_special_tokens=False, return_offsets_mapping=True, truncation=False
        )
        rows = [(list(enc["input_ids"][i]), list(enc["offset_mapping"][i]), enc.word_ids(i))
                for i in range(len(texts))]  # fmt: skip
    return [_group(text, *row) for text, row in zip(texts, rows, strict=True)]


def _group(
    text: str, ids: list[int], offsets: Sequence[Any], word_ids: Sequence[int | None]
) -> Encoded:
    """Sub-words grouped into words, with each word's character span and casing."""
    word_first: list[int] = []
    word_spans: list[tuple[int, int]] = []
    sub_word: list[int] = []
    last: int | None = None
    for pos, (wid, (a, b)) in enumerate(zip(word_ids, offsets, strict=True)):
        if wid != last or not word_first:
            word_first.append(pos)
            word_spans.append((int(a), int(b)))
            last = wid
        else:
            word_spans[-1] = (word_spans[-1][0], int(b))
        sub_word.append(len(word_first) - 1)
    # An uncased tokenizer strips accents, and its offsets then end a word before the
    # combining marks that close it ("Zoe" + U+0308, a Hindi vowel sign, an emoji's
    # variation selector): give them back, or spans would cut the last letter.
    for w, (a, b) in enumerate(word_spans):
        limit = word_spans[w + 1][0] if w + 1 < len(word_spans) else len(text)
        while b < limit and unicodedata.category(text[b]).startswith("M"):
            b += 1
        word_spans[w] = (a, b)
    word_case = [casing(text[a:b]) for a, b in word_spans]
    return Encoded(ids, [word_case[w] for w in sub_word], word_first, word_spans)


def windows(n: int, size: int, stride: int) -> list[int]:
    """Start positions of windows of ``size`` sub-words that cover ``n`` sub-words.

    Windows overlap by ``stride`` sub-words, so every token has context on both sides
    in some window.
    """
    if n <= size:
        return [0]
    step = max(1, size - stride)
    starts = list(range(0, n - size, step))
    starts.append(n - size)
    return starts


def window_chunks(encs: Sequence[Encoded], size: int, stride: int) -> list[tuple[int, int]]:
    """(text index, window start) of every window of every text."""
    return [(i, s) for i, e in enumerate(encs) for s in windows(len(e.ids), size, stride)]


def window_arrays(
    encs: Sequence[Encoded],
    chunks: Sequence[tuple[int, int]],
    size: int,
    special: tuple[int, int, int],
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Padded (ids, mask, casing) of the windows ``chunks``, [CLS] and [SEP] around each."""
    cls, sep, pad = special
    rows = [(i, s, min(len(encs[i].ids), s + size)) for i, s in chunks]
    width = max(e - s for _, s, e in rows) + 2
    ids = np.full((len(rows), width), pad, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    case = np.zeros((len(rows), width), dtype=np.int64)
    for r, (i, s, e) in enumerate(rows):
        n = e - s
        ids[r, : n + 2] = [cls, *encs[i].ids[s:e], sep]
        mask[r, : n + 2] = 1
        case[r, 1 : n + 1] = encs[i].case[s:e]
    return ids, mask, case


def merge_windows(
    encs: Sequence[Encoded],
    window_logits: dict[tuple[int, int], NDArray[np.float32]],
    size: int,
    stride: int,
    n_tags: int,
) -> list[NDArray[np.float32]]:
    """Each word's logits (its first sub-word), from the window with the most context.

    ``window_logits[(i, start)]`` holds the logits of window ``start`` of text ``i``,
    one row per sub-word after [CLS].
    """
    out = []
    for i, enc in enumerate(encs):
        starts = windows(len(enc.ids), size, stride)
        rows = np.zeros((len(enc.word_first), n_tags), dtype=np.float32)
        for w, pos in enumerate(enc.word_first):
            k = best_window(pos, starts, size)
            rows[w] = window_logits[(i, starts[k])][pos - starts[k]]
        out.append(rows)
    return out


def best_window(pos: int, starts: Sequence[int], size: int) -> int:
    """The window in which ``pos`` is farthest from an edge (most context)."""
    return max(range(len(starts)), key=lambda k: min(pos - starts[k], starts[k] + size - 1 - pos)
               if starts[k] <= pos < starts[k] + size else -1)  # fmt: skip


def word_tags(enc: Encoded, spans: Sequence[Span]) -> tuple[list[str], int]:
    """IOB2 tag of each word from character spans, and the count of misaligned spans.

    A span that does not start and end on word boundaries is widened to whole words.
    """
    tags = ["O"] * len(enc.word_spans)
    misaligned = 0
    for span in spans:
        inside = [i for i, (a, b) in enumerate(enc.word_spans) if b > span.start and a < span.end]
        if not inside:
            misaligned += 1
            continue
        if enc.word_spans[inside[0]][0] != span.start or enc.word_spans[inside[-1]][1] != span.end:
            misaligned += 1
        # B- on the first word the span gets (a widened span before it may hold a word),
        # so that the tags stay valid IOB2
        prefix = "B-"
        for i in inside:
            if tags[i] != "O":
                prefix = "B-"
                continue
            tags[i] = prefix + span.label
            prefix = "I-"
    return tags, misaligned


def sub_labels(
    encs: Sequence[Encoded], examples: Sequence[TaggedExample], tags: Sequence[str]
) -> tuple[list[list[int]], list[str]]:
    """Training labels: the tag index at each word's first sub-word, ``IGNORE`` elsewhere.

    Also says where each misaligned span is: its example's source, else its text's start.
    """
    index = {t: i for i, t in enumerate(tags)}
    out: list[list[int]] = []
    odd: list[str] = []
    for enc, ex in zip(encs, examples, strict=True):
        word, bad = word_tags(enc, ex.spans)
        odd += [ex.source or repr(ex.text[:60])] * bad
        y = [IGNORE] * len(enc.ids)
        for pos, tag in zip(enc.word_first, word, strict=True):
            y[pos] = index[tag]
        out.append(y)
    return out, odd


def transition_mask(tags: Sequence[str]) -> NDArray[np.float64]:
    """``allowed[i, j]`` is 0 when tag j may follow tag i in IOB2, else -inf.

    Row ``len(tags)`` is the start of the sequence.
    """
    n = len(tags)
    allowed = np.zeros((n + 1, n), dtype=np.float64)
    for j, to in enumerate(tags):
        if not to.startswith("I-"):
            continue
        label = to[2:]
        for i, frm in enumerate([*tags, "<start>"]):
            if frm[2:] != label or frm == "<start>":
                allowed[i, j] = -np.inf
    return allowed


def viterbi(log_probs: NDArray[np.float64], allowed: NDArray[np.float64]) -> list[int]:
    """The most probable tag path that is valid IOB2 (no ``I-X`` without ``B-X``).

    Cheaper than a CRF and enough here: the encoder scores each word, the decoder only
    forbids impossible transitions, which removes broken entities.
    """
    n_words, n_tags = log_probs.shape
    if n_words == 0:
        return []
    score = log_probs[0] + allowed[n_tags]
    back = np.zeros((n_words, n_tags), dtype=np.int64)
    for t in range(1, n_words):
        cand = score[:, None] + allowed[:n_tags]
        back[t] = cand.argmax(axis=0)
        score = cand.max(axis=0) + log_probs[t]
    path = [int(score.argmax())]
    for t in range(n_words - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


def decode_spans(
    text: str,
    enc: Encoded,
    probs: NDArray[np.float64],
    tags: Sequence[str],
    allowed: NDArray[np.float64],
) -> list[Span]:
    """Spans of the best valid tag path; confidence is the mean probability of its tags."""
    path = viterbi(np.log(np.clip(probs, 1e-12, 1.0)), allowed)
    spans: list[Span] = []
    i = 0
    while i < len(path):
        tag = tags[path[i]]
        if tag == "O":
            i += 1
            continue
        label = tag[2:]
        j = i + 1
        while j < len(path) and tags[path[j]] == f"I-{label}":
            j += 1
        start, end = enc.word_spans[i][0], enc.word_spans[j - 1][1]
        conf = float(np.mean([probs[k, path[k]] for k in range(i, j)]))
        spans.append(Span(label, start, end, text[start:end], conf))
        i = j
    return spans
