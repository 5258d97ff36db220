"""Retrieval: knowledge bases, document chunking, sentence vectors and a cosine index.

Importing this package does not import torch: the torch encoder
(:class:`SentenceEncoder`) is loaded on first use, so an exported skill that encodes
with :class:`OnnxSentenceEncoder` runs with onnxruntime and ``tokenizers`` only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from slmstack.retrieval.base import Encoded, TextEncoder, TokenFacts
from slmstack.retrieval.chunking import Chunk, Document, chunk_documents, read_documents
from slmstack.retrieval.index import Hit, VectorIndex
from slmstack.retrieval.knowledge import KBEntry, read_kb, validate_kb

_LAZY = {
    "SentenceEncoder": "slmstack.retrieval.encoder",
    "OnnxSentenceEncoder": "slmstack.retrieval.onnx_encoder",
}

__all__ = [
    "Chunk",
    "Document",
    "Encoded",
    "Hit",
    "KBEntry",
    "OnnxSentenceEncoder",
    "SentenceEncoder",
    "TextEncoder",
    "TokenFacts",
    "VectorIndex",
    "chunk_documents",
    "read_documents",
    "read_kb",
    "validate_kb",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'slmstack.retrieval' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from slmstack.retrieval.encoder import SentenceEncoder
    from slmstack.retrieval.onnx_encoder import OnnxSentenceEncoder
