"""A frozen sentence encoder with a per-text cache, for skills that train light heads.

Documents repeat lines (headers, footers, boiler-plate clauses), so each distinct text
is encoded once. Vectors are mean-pooled and L2-normalised, as all-MiniLM was trained.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from slmstack.models.encoder import (
    length_batches,
    mean_pool,
    model_window,
    pad_batch,
    tokenize,
)
from slmstack.models.resolve import resolve
from slmstack.models.shared import shared_encoder, shared_tokenizer
from slmstack.progress import progress

_MAX_CACHED = 200_000


class FrozenEncoder:
    """Encode texts once and keep their vectors and token counts."""

    def __init__(
        self,
        base: str,
        *,
        max_length: int,
        batch_size: int,
        allow_pickle: bool = False,
        expect_sha256: str | None = None,
    ):
        self.source = resolve(base, allow_pickle=allow_pickle, expect_sha256=expect_sha256)
        # Shared with every other skill on the same weights (never trained here).
        self.tokenizer = shared_tokenizer(self.source.path)
        self.model = shared_encoder(self.source)
        self.window = model_window(self.tokenizer, self.model, max_length)
        self.batch_size = batch_size
        self.dim = int(self.model.config.hidden_size)  # type: ignore[union-attr,arg-type]
        self._vectors: dict[str, NDArray[np.float32]] = {}
        self._tokens: dict[str, int] = {}
        self.truncated = 0
        # Skills on one base share this object (a compliance pack's checks, parallel steps):
        # the caches are filled, cleared and read under one lock.
        self._lock = threading.RLock()

    def cache(self, texts: Sequence[str], desc: str = "encode lines") -> None:
        """Encode every text not seen before."""
        with self._lock:
            self._cache(texts, desc)

    def _cache(self, texts: Sequence[str], desc: str) -> None:
        todo = sorted({t for t in texts if t not in self._vectors})
        if not todo:
            return
        if len(self._vectors) + len(todo) > _MAX_CACHED:  # bound memory in long-lived servers
            self._vectors.clear()
            self._tokens.clear()
            todo = sorted(set(texts))
        tok = tokenize(self.tokenizer, todo, self.window)
        pad = self.tokenizer.pad_token_id or 0
        self.truncated += sum(1 for n in tok.lengths if n > self.window)
        with progress() as bar, torch.inference_mode():
            task = bar.add_task(desc, total=len(todo), info="")
            for idx in length_batches(tok.lengths, self.batch_size):
                ids, mask = pad_batch([tok.input_ids[i] for i in idx], pad)
                hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
                vec = F.normalize(mean_pool(hidden, mask), dim=-1).float().numpy()
                for row, i in enumerate(idx):
                    self._vectors[todo[i]] = vec[row]
                    self._tokens[todo[i]] = tok.lengths[i]
                bar.update(task, advance=len(idx))

    def vector(self, text: str) -> NDArray[np.float32]:
        """The cached vector of ``text`` (encoded now if it was not cached)."""
        with self._lock:
            if text not in self._vectors:
                self._cache([text], "encode lines")
            return self._vectors[text]

    def n_tokens(self, text: str) -> int:
        """Untruncated token count of a cached text."""
        with self._lock:
            if text not in self._tokens:
                self._cache([text], "encode lines")
            return self._tokens[text]

    def provenance(self) -> dict[str, Any]:
        """Reference, origin, sha256 and licence of the base, for config and card."""
        return {
            "ref": self.source.ref,
            "origin": self.source.origin,
            "sha256": self.source.sha256,
            "licence": self.source.licence,
        }
