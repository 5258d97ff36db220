"""Retrieval: knowledge bases, document chunking, sentence vectors and a cosine index."""

from slmstack.retrieval.chunking import Chunk, Document, chunk_documents, read_documents
from slmstack.retrieval.encoder import Encoded, SentenceEncoder
from slmstack.retrieval.index import Hit, VectorIndex
from slmstack.retrieval.knowledge import KBEntry, read_kb, validate_kb

__all__ = [
    "Chunk",
    "Document",
    "Encoded",
    "Hit",
    "KBEntry",
    "SentenceEncoder",
    "VectorIndex",
    "chunk_documents",
    "read_documents",
    "read_kb",
    "validate_kb",
]
