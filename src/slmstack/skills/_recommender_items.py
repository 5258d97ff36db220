"""Item text embedding and the ranked output of :class:`~.recommender.Recommender`."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.errors import DataError
from slmstack.types import LabelScore, Prediction, Usage

UNKNOWN_ITEMS = "unknown_items"
# The last catalogue embedded, by (encoder sha256, window, texts): one entry, so memory
# stays bounded in a long-lived process.
_last: list[Any] = [None, None]
NOTHING_LEFT = "nothing_left"


def embed_texts(
    base: str,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int,
    allow_pickle: bool,
    expect_sha256: str | None = None,
) -> tuple[NDArray[np.float32], dict[str, Any], int]:
    """Unit vectors of ``texts`` with the frozen encoder, its provenance, and a count.

    The count is of distinct texts longer than the encoder's window (cut, and reported
    on the model card).
    """
    from slmstack.skills._frozen import FrozenEncoder

    enc = FrozenEncoder(
        base,
        max_length=max_length,
        batch_size=batch_size,
        allow_pickle=allow_pickle,
        expect_sha256=expect_sha256,
    )
    key = (enc.source.sha256, enc.window, hashlib.sha256("\x1e".join(texts).encode()).hexdigest())
    if _last[0] != key:  # refits on one catalogue (tuning, benchmarks) embed it once
        enc.cache(texts, desc="embed items")
        truncated = sum(enc.n_tokens(t) > enc.window for t in set(texts))
        vectors = np.stack([enc.vector(t) for t in texts]).astype(np.float32)
        _last[:] = [key, (vectors, truncated)]
    vectors, truncated = _last[1]
    return vectors.copy(), enc.provenance(), truncated


def check_new_items(items: Mapping[str, str], catalogue: Mapping[str, int]) -> None:
    """Refuse ids a history cannot hold, items without text, ids already in ``catalogue``."""
    for item, text in items.items():
        if not item.strip() or any(c.isspace() or c == "," for c in item):
            raise DataError(
                f"item id {item!r} contains a space or comma, or is empty; histories are "
                "written as ids separated by spaces, so ids cannot contain them. Replace "
                "them (e.g. with '_')."
            )
        if not text.strip():
            raise DataError(f"item {item!r} has no text; give it a title or description")
    clash = [i for i in items if i in catalogue]
    if clash:
        raise DataError(f"items {clash[:5]} are already in the catalogue; ids must be new")


def ranked_prediction(
    items: Sequence[str],
    unknown: Sequence[str],
    known: Sequence[int],
    row: NDArray[np.float32],
    *,
    top_k: int,
    max_len: int,
    ms: float,
) -> Prediction:
    """The top ``top_k`` unseen items of one history from its catalogue logits ``row``.

    Scores are the softmax over the items not in the history. ``unknown`` ids were
    ignored (a warning); a history with no known item abstains with ``"unknown_items"``.
    """
    warnings = []
    if unknown:
        warnings.append(
            f"{len(unknown)} item id(s) not in the catalogue were ignored: {list(unknown[:5])}"
        )
    if len(known) > max_len:
        warnings.append(
            f"the history has {len(known)} known items; only the newest "
            f"{max_len} were read (max_len)"
        )
    usage = Usage(input_tokens=len(known), latency_ms=ms)
    if not known:
        hint = (
            "no item of the history is in the catalogue; write the history as item ids "
            "separated by spaces, oldest first"
        )
        return Prediction(abstained=UNKNOWN_ITEMS, usage=usage, warnings=(hint, *warnings))
    allowed = np.ones(len(row), dtype=bool)
    allowed[list(known)] = False
    candidates = np.flatnonzero(allowed)
    if not len(candidates):
        return Prediction(
            abstained=NOTHING_LEFT,
            usage=usage,
            warnings=("every catalogue item is in the history", *warnings),
        )
    logits = row[candidates].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top = np.argsort(-probs, kind="stable")[:top_k]
    listed = tuple(LabelScore(items[int(candidates[j])], float(probs[j])) for j in top)
    return Prediction(
        label=listed[0].label,
        confidence=listed[0].score,
        scores=listed,
        data={"history_items": len(known)},
        usage=usage,
        warnings=tuple(warnings),
    )
