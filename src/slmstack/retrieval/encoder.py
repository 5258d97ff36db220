"""Sentence vectors for retrieval on torch: the encoder from ``models/``, mean pooling, unit norm.

Vectors are L2-normalised, so a dot product is the cosine similarity. Texts longer
than the window are cut, and :class:`Encoded` says which, so callers can warn.

This is the torch runtime of :class:`~slmstack.retrieval.base.TextEncoder`, the only
module of :mod:`slmstack.retrieval` that imports torch at import time (with
:mod:`~slmstack.retrieval.contrastive`, which trains it); an exported skill encodes with
:class:`~slmstack.retrieval.onnx_encoder.OnnxSentenceEncoder` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slmstack.errors import ConfigError
from slmstack.models.bf16 import inference_module
from slmstack.models.encoder import (
    Tokenized,
    autocast,
    length_batches,
    load_encoder,
    load_tokenizer,
    mean_pool,
    model_window,
    pad_batch,
    tokenize,
)
from slmstack.models.resolve import ModelSource, resolve
from slmstack.models.shared import shared_encoder, shared_tokenizer
from slmstack.progress import progress
from slmstack.retrieval.base import Encoded

Precision = Literal["auto", "fp32", "bf16"]  # "auto": bf16 where the CPU has it natively

__all__ = ["Encoded", "Precision", "SentenceEncoder"]


class SentenceEncoder:
    """A transformer encoder that turns texts into normalised sentence vectors.

    With ``shared=True`` the module is the process-wide frozen copy of these weights
    (:mod:`slmstack.models.shared`), for encoders that only encode; the default loads a
    copy of its own. :func:`~slmstack.retrieval.contrastive.finetune_on_pairs` trains a
    private copy either way.

    Example:
        >>> enc = SentenceEncoder.from_ref("minilm")  # doctest: +SKIP
        >>> enc.encode(["reset my password"]).vectors.shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(
        self,
        source: ModelSource,
        *,
        max_length: int = 256,
        batch_size: int = 64,
        precision: Precision = "fp32",
        shared: bool = False,
    ):
        if precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(
                f"precision must be 'auto', 'fp32' or 'bf16'. Got {precision!r} instead."
            )
        if batch_size < 1 or max_length < 8:
            raise ConfigError(
                f"batch_size must be >= 1 and max_length >= 8. Got {batch_size}, {max_length}."
            )
        self.source = source
        self.tokenizer: Any
        self.model: nn.Module
        if shared:  # one frozen module per process and weights; see models/shared.py
            self.tokenizer, self.model = shared_tokenizer(source.path), shared_encoder(source)
        else:
            self.tokenizer, self.model = load_tokenizer(source.path), load_encoder(source)
        self.window = model_window(self.tokenizer, self.model, max_length)
        self.batch_size = batch_size
        self.precision = precision

    @classmethod
    def from_ref(cls, ref: str | Path, *, allow_pickle: bool = False, **kwargs: Any) -> Self:
        """Resolve ``ref`` (alias, folder or hub id) and load it."""
        return cls(resolve(ref, allow_pickle=allow_pickle), **kwargs)

    @property
    def dim(self) -> int:
        """Vector size."""
        return int(self.model.config.hidden_size)  # type: ignore[union-attr,arg-type]

    @property
    def pad_id(self) -> int:
        """Token id used for padding."""
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else 0

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        """Token ids cut to the window (cuts recorded)."""
        return tokenize(self.tokenizer, texts, self.window)

    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor, model: nn.Module | None = None
    ) -> torch.Tensor:
        """Differentiable unit-norm sentence vectors of a padded batch (``model``: a stand-in)."""
        run = self.model if model is None else model
        hidden = run(input_ids=ids, attention_mask=mask).last_hidden_state
        return F.normalize(mean_pool(hidden, mask).float(), dim=-1)

    def encode(self, texts: Sequence[str], *, desc: str | None = None) -> Encoded:
        """Vectors for ``texts`` in input order, without gradients (batched by length)."""
        tok = self.tokenize(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return Encoded(out, tok)
        lengths = [len(x) for x in tok.input_ids]
        was_training = self.model.training
        self.model.eval()
        model = inference_module(self.model, self.precision)
        with progress() as bar, torch.inference_mode():
            task = bar.add_task(desc or "encode", total=len(texts), info="", visible=bool(desc))
            for idx in length_batches(lengths, self.batch_size):
                ids, mask = pad_batch([tok.input_ids[i] for i in idx], self.pad_id)
                with autocast(self.precision):
                    vec = self.forward(ids, mask, model)
                out[idx] = vec.float().numpy()
                bar.update(task, advance=len(idx))
        self.model.train(was_training)
        return Encoded(out, tok)

    def save(self, folder: Path) -> str:
        """Save weights (safetensors) and tokenizer; return the weight file, relative."""
        folder.mkdir(parents=True, exist_ok=True)
        model: Any = self.model
        model.save_pretrained(str(folder), safe_serialization=True)
        self.tokenizer.save_pretrained(str(folder))
        return "model.safetensors"
