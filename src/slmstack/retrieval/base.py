"""The contract of a sentence encoder for retrieval, shared by the torch and ONNX runtimes.

Retrieval skills need three things of an encoder: unit-norm vectors for texts, their
size, and the token facts of each text (how many tokens, whether it was cut). The torch
:class:`~slmstack.retrieval.encoder.SentenceEncoder` and the exported
:class:`~slmstack.retrieval.onnx_encoder.OnnxSentenceEncoder` both give them, so a skill
written against :class:`TextEncoder` runs on either. This module imports neither torch
nor onnxruntime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


class TokenFacts(Protocol):
    """Token ids of a batch of texts (cut to the window) and which texts were cut."""

    @property
    def input_ids(self) -> list[list[int]]:
        """Token ids per text, special tokens included."""
        ...

    def truncation_warning(self, i: int) -> str | None:
        """A message when text ``i`` was cut to the window, else ``None``."""
        ...


@dataclass(frozen=True)
class Encoded:
    """Unit-norm vectors (one row per text) and the tokenization, for truncation warnings."""

    vectors: NDArray[np.float32]
    tokens: TokenFacts


class TextEncoder(Protocol):
    """Texts in, unit-norm sentence vectors out (cosine = dot product)."""

    @property
    def dim(self) -> int:
        """Vector size."""
        ...

    @property
    def window(self) -> int:
        """Tokens per text the encoder reads; longer texts are cut and reported."""
        ...

    def encode(self, texts: Sequence[str], *, desc: str | None = None) -> Encoded:
        """Vectors for ``texts`` in input order (``desc`` names a progress bar)."""
        ...
