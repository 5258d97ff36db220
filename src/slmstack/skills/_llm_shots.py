"""Demonstrations for the LLM skills: training examples, the ``k`` most like each text.

Retrieved demonstrations beat a fixed set because a text's nearest neighbours carry the
distinctions that matter for it, which matters most with dozens of labels. Similarity
is the cosine of sentence-encoder vectors (``"embedding"``, the retrieval encoder of
:mod:`slmstack.retrieval`) or of TF-IDF vectors (``"tfidf"``: lexical, exact, no torch).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from slmstack.artifacts import read_jsonl
from slmstack.errors import ArtifactError, DataError

Retriever = Literal["embedding", "tfidf"]


class ShotPool:
    """Training examples kept as demonstrations; ``nearest`` finds those like a text.

    Each pair is a text and what the assistant answered in its demonstration (a label,
    a JSON record). Only a pool that will be searched (``k > 0``) is indexed. The
    embedding vectors are saved as a tensor, so a loaded skill retrieves the same
    demonstrations without re-encoding the pool; TF-IDF is refitted (it is exact).
    """

    FILE = "pool.jsonl"

    def __init__(self, retriever: Retriever, encoder: str, *, allow_pickle: bool = False):
        self.retriever = retriever
        self.encoder_ref = encoder
        self.allow_pickle = allow_pickle
        self.texts: list[str] = []
        self.answers: list[str] = []
        self.encoder: Any = None
        self.vectors: NDArray[np.float32] | None = None
        self.tfidf: Any = None

    def build(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        index: bool,
        vectors: NDArray[np.float32] | None = None,
        expect_sha256: str | None = None,
    ) -> None:
        """Keep ``pairs`` and index their texts; saved ``vectors`` spare the encoding."""
        self.texts, self.answers = [t for t, _ in pairs], [a for _, a in pairs]
        if not index or not self.texts:
            return
        if self.retriever == "tfidf":
            from sklearn.feature_extraction.text import TfidfVectorizer

            # Word uni- and bigrams with sublinear counts: the usual strong lexical baseline.
            self.tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
            try:
                self._pool_matrix = self.tfidf.fit_transform(self.texts)
            except ValueError as exc:  # an empty vocabulary
                raise DataError(f"TF-IDF cannot index the demonstrations ({exc}); use "
                                "retriever='embedding'") from exc  # fmt: skip
            return
        from slmstack.models.resolve import resolve
        from slmstack.retrieval.encoder import SentenceEncoder

        source = resolve(self.encoder_ref, allow_pickle=self.allow_pickle,
                         expect_sha256=expect_sha256)  # fmt: skip
        self.encoder = SentenceEncoder(source, max_length=128, shared=True)
        if vectors is None:
            desc = "embed demonstrations" if len(self.texts) > 256 else None
            vectors = self.encoder.encode(self.texts, desc=desc).vectors
        if vectors.shape != (len(self.texts), self.encoder.dim):
            raise ArtifactError(
                f"saved demonstration vectors have shape {vectors.shape}; expected "
                f"({len(self.texts)}, {self.encoder.dim}). Re-save the skill."
            )
        self.vectors = np.asarray(vectors, dtype=np.float32)

    def state(self) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Config entries and tensors of a skill's ``_state`` (the pairs go to :meth:`write`)."""
        encoder = None if self.encoder is None else dict(self.encoder.source.describe())
        tensors = {} if self.vectors is None else {"pool": {"vectors": self.vectors}}
        return {"retrieval_encoder": encoder}, tensors

    def write(self, folder: Path) -> None:
        """Write the pairs to ``pool.jsonl``."""
        with (folder / self.FILE).open("w", encoding="utf-8") as fh:
            for text, answer in zip(self.texts, self.answers, strict=True):
                fh.write(json.dumps({"text": text, "answer": answer}, ensure_ascii=False) + "\n")

    def load(
        self, folder: Path, config: Mapping[str, Any], tensors: Mapping[str, Any], *, index: bool
    ) -> None:
        """Rebuild from what :meth:`state` and :meth:`write` saved."""
        pairs = read_jsonl(folder / self.FILE, lambda r: (str(r["text"]), str(r["answer"])))
        encoder = config["retrieval_encoder"] or {}
        self.build(pairs, index=index, vectors=tensors.get("pool", {}).get("vectors"),
                   expect_sha256=encoder.get("sha256"))  # fmt: skip

    def nearest(self, queries: Sequence[str], k: int) -> list[list[int]]:
        """Indexes of the ``k`` most similar pool texts per query, most similar first."""
        k = min(k, len(self.texts))
        if k == 0 or not queries:
            return [[] for _ in queries]
        if self.tfidf is not None:
            sims = (self.tfidf.transform(list(queries)) @ self._pool_matrix.T).toarray()
        else:
            import torch

            assert self.vectors is not None
            q = self.encoder.encode(list(queries)).vectors
            # torch, not numpy: numpy's BLAS threads would slow the encoder's next pass.
            with torch.inference_mode():
                sims = (torch.from_numpy(q) @ torch.from_numpy(self.vectors).T).numpy()
        # A stable sort breaks ties by pool order, so the same text gets the same shots.
        return [np.argsort(-row, kind="stable")[:k].tolist() for row in sims]
