"""Token ids for static embeddings, with a per-word cache where that is exact.

Method: a BERT tokenizer (``BertNormalizer`` + ``BertPreTokenizer`` + ``WordPiece``)
splits text on whitespace before anything else, and normalises character by character,
so the ids of a text are the ids of its whitespace-separated words, concatenated. For
texts of printable ASCII only (``0x20``-``0x7e``: no tabs, no control, accented or CJK
characters, whose handling by the normaliser is subtler), the words come from
``str.split()`` and each distinct word is tokenised once and remembered. Any other text,
and every text of any other tokenizer family, goes through the tokenizer as a whole.

Why: on two CPU cores the Rust tokenizer is the bottleneck of the static tier (about
35k short texts/s, against several hundred thousand dictionary look-ups); a word cache
is exact here, unlike a cache of whole texts, which rarely repeat. Cost: memory for the
distinct words seen, bounded by ``max_words`` (the cache is dropped when full).
Thread-safe: each call works on the dictionary it started with, never cleared under it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

_PLAIN = re.compile(r"[\x20-\x7e]*")  # printable ASCII: the only whitespace is " "
_MAX_WORDS = 500_000


def word_cache_is_exact(tokenizer_json: str) -> bool:
    """Whether per-word tokenisation equals whole-text tokenisation for this tokenizer."""
    spec = json.loads(tokenizer_json)
    normalizer = spec.get("normalizer") or {}
    pre = spec.get("pre_tokenizer") or {}
    model = spec.get("model") or {}
    added = spec.get("added_tokens") or []
    return (
        normalizer.get("type") == "BertNormalizer"
        and pre.get("type") == "BertPreTokenizer"
        and model.get("type") == "WordPiece"
        and not any(" " in str(t.get("content", "")) for t in added)
    )


class TokenIds:
    """Token ids (no special tokens) of many texts, through a word cache when exact."""

    def __init__(self, tokenizer: Any, *, use_word_cache: bool, max_words: int = _MAX_WORDS):
        self.tokenizer = tokenizer
        self.use_word_cache = use_word_cache
        self.max_words = max_words
        self._words: dict[str, list[int]] = {}

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        """The ids of each text, as ``tokenizer.encode(text, add_special_tokens=False)``."""
        if not self.use_word_cache:
            return self._encode(texts)
        words = self._words
        split: list[list[str] | None] = []
        missing: set[str] = set()
        for text in texts:
            if _PLAIN.fullmatch(text) is None:
                split.append(None)
                continue
            parts = text.split()
            split.append(parts)
            missing.update(w for w in parts if w not in words)
        if missing:
            if len(words) + len(missing) > self.max_words:  # bound memory in long-lived servers
                # A new dict rather than clear(): a concurrent call keeps reading its own.
                words = self._words = {}
                missing = {w for got in split if got is not None for w in got}
            todo = sorted(missing)
            words.update(zip(todo, self._encode(todo), strict=True))
        whole = [t for t, got in zip(texts, split, strict=True) if got is None]
        rest = iter(self._encode(whole)) if whole else iter(())
        out: list[list[int]] = []
        for found in split:
            if found is None:
                out.append(next(rest))
            elif len(found) == 1:
                out.append(words[found[0]])
            else:
                out.append([i for w in found for i in words[w]])
        return out

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        encodings = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]
