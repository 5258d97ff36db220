"""An exact cosine index over unit vectors, in numpy, saved as safetensors + JSON.

Rows carry a *key*: several rows may share one (the phrasings of one FAQ entry), and a
search returns the best distinct keys, each scored by its best row. Exact search is
a single matrix product; on two cores it scores 10k rows × 1k queries in well under a
second, which covers the knowledge bases and manuals this project targets.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from slmstack.errors import ArtifactError, ConfigError

_QUERY_BLOCK = 512  # queries scored per matrix product; bounds memory at 512 × rows floats
# Up to this many queries, numpy scores without BLAS (einsum's own loops). A BLAS matmul
# wakes OpenBLAS's thread pool, whose spinning threads then compete with onnxruntime's
# for the cores: measured on 2 cores, one query against 20,000 rows followed by an int8
# MiniLM call, the pair took 8-9 ms with the BLAS product, 3.8 ms with einsum, 1.8-2.8 ms
# for the encoder alone. Bulk scoring keeps BLAS, which is many times faster there.
_NO_BLAS_QUERIES = 16


@dataclass(frozen=True)
class Hit:
    """One search result: the key, its cosine similarity and the row that scored it."""

    key: str
    score: float
    row: int
    text: str


class VectorIndex:
    """Unit vectors with keys; cosine top-k over distinct keys.

    Example:
        >>> import numpy as np
        >>> index = VectorIndex(2)
        >>> index.add(["a", "b"], ["x", "y"], np.array([[1, 0], [0, 1]], dtype=np.float32))
        >>> index.search(np.array([[0.9, 0.1]], dtype=np.float32), k=1)[0][0].key
        'a'
    """

    def __init__(self, dim: int):
        if dim < 1:
            raise ConfigError(f"index dimension must be >= 1, got {dim}")
        self.dim = dim
        self._vectors: NDArray[np.float32] = np.zeros((0, dim), dtype=np.float32)
        self._keys: list[str] = []
        self._texts: list[str] = []
        self._groups: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def keys(self) -> list[str]:
        """Distinct keys, in insertion order."""
        return list(self._groups)

    def copy(self) -> VectorIndex:
        """An index with the same rows that :meth:`add` and :meth:`remove` change apart."""
        other = VectorIndex(self.dim)
        other._vectors, other._keys, other._texts = (
            self._vectors,
            list(self._keys),
            list(self._texts),
        )
        other._regroup()
        return other

    def add(self, keys: Sequence[str], texts: Sequence[str], vectors: NDArray[np.float32]) -> None:
        """Append rows; ``vectors`` must be unit-norm, shape ``(len(keys), dim)``."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(keys), self.dim) or len(texts) != len(keys):
            raise ConfigError(
                f"add() needs {len(keys)} keys, texts and vectors of size {self.dim}; got "
                f"{len(texts)} texts and vectors of shape {vectors.shape}"
            )
        norms = np.linalg.norm(vectors, axis=1)
        if len(norms) and not np.allclose(norms, 1.0, atol=1e-3):
            raise ConfigError(
                "index vectors must be L2-normalised (cosine = dot product); got norms "
                f"from {norms.min():.3f} to {norms.max():.3f}"
            )
        self._vectors = np.concatenate([self._vectors, vectors])
        self._keys.extend(keys)
        self._texts.extend(texts)
        self._regroup()

    def remove(self, keys: Collection[str]) -> int:
        """Drop every row whose key is in ``keys``; return how many rows went."""
        gone = set(keys)
        keep = [i for i, k in enumerate(self._keys) if k not in gone]
        removed = len(self._keys) - len(keep)
        self._vectors = self._vectors[keep]
        self._keys = [self._keys[i] for i in keep]
        self._texts = [self._texts[i] for i in keep]
        self._regroup()
        return removed

    def _regroup(self) -> None:
        groups: dict[str, list[int]] = {}
        for i, k in enumerate(self._keys):
            groups.setdefault(k, []).append(i)
        self._groups = groups
        # Rows sorted by group let np.maximum.reduceat take each group's best score at once.
        self._order = np.array([i for rows in groups.values() for i in rows], dtype=np.int64)
        sizes = [len(rows) for rows in groups.values()]
        self._starts = np.cumsum([0, *sizes[:-1]], dtype=np.int64)[: len(sizes)]
        self._group_keys = list(groups)

    def similarities(self, queries: NDArray[np.float32]) -> NDArray[np.float32]:
        """Cosine of every query against every row, shape ``(queries, rows)``."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ConfigError(f"queries must have shape (n, {self.dim}); got {q.shape}")
        torch = sys.modules.get("torch")
        if torch is None:  # an exported (ONNX) skill: torch is never imported for this
            return _numpy_similarities(q, self._vectors)
        # With the torch encoder, the product runs in torch too: a numpy matmul wakes the
        # BLAS thread pool, whose spinning threads slow the encoder's next forward pass on
        # a small machine. Same arithmetic either way (float32 dot products).
        with torch.inference_mode():
            product = torch.from_numpy(np.ascontiguousarray(q)) @ torch.from_numpy(self._vectors).T
        out: NDArray[np.float32] = product.numpy()
        return out

    def key_scores(self, queries: NDArray[np.float32]) -> NDArray[np.float32]:
        """Best score of each distinct key (columns in :attr:`keys` order) for each query."""
        q = np.asarray(queries, dtype=np.float32)
        out = np.full((len(q), len(self._group_keys)), -np.inf, dtype=np.float32)
        for s in range(0, len(q), _QUERY_BLOCK):
            out[s : s + _QUERY_BLOCK] = self.group_max(self.similarities(q[s : s + _QUERY_BLOCK]))
        return out

    def group_max(self, sims: NDArray[np.float32]) -> NDArray[np.float32]:
        """Reduce row similarities ``(queries, rows)`` to the best per key ``(queries, keys)``.

        Rows masked with ``-inf`` are ignored, which lets callers score a query as if
        some rows were absent (leave-one-out calibration).
        """
        if sims.ndim != 2 or sims.shape[1] != len(self._keys):
            raise ConfigError(
                f"similarities must have shape (n, {len(self._keys)}), got {sims.shape}"
            )
        if not len(self._keys):
            return np.full((len(sims), 0), -np.inf, dtype=np.float32)
        out: NDArray[np.float32] = np.maximum.reduceat(sims[:, self._order], self._starts, axis=1)
        return out

    def key_of(self, row: int) -> str:
        """The key of a row."""
        return self._keys[row]

    def row_vectors(self, rows: Sequence[int]) -> NDArray[np.float32]:
        """Copies of the vectors of ``rows``."""
        out: NDArray[np.float32] = self._vectors[list(rows)].copy()
        return out

    def rows_of(self, key: str) -> list[int]:
        """Row numbers holding ``key`` (empty when absent)."""
        return list(self._groups.get(key, ()))

    def search(self, queries: NDArray[np.float32], k: int) -> list[list[Hit]]:
        """The ``k`` best distinct keys per query, best first, each with its best row."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        scores = self.key_scores(queries)
        k = min(k, scores.shape[1])
        results: list[list[Hit]] = []
        for qi, row in enumerate(scores):
            top = np.argsort(-row, kind="stable")[:k]
            hits = []
            for g in top:
                key = self._group_keys[int(g)]
                rows = self._groups[key]
                sims = self._vectors[rows] @ np.asarray(queries[qi], dtype=np.float32)
                best = rows[int(np.argmax(sims))]
                hits.append(Hit(key, float(row[g]), best, self._texts[best]))
            results.append(hits)
        return results

    def save(self, folder: Path, name: str = "index") -> list[str]:
        """Write ``{name}.safetensors`` (vectors) and ``{name}.json`` (keys, texts)."""
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {"vectors": np.ascontiguousarray(self._vectors)}, str(folder / f"{name}.safetensors")
        )
        meta = {"dim": self.dim, "keys": self._keys, "texts": self._texts}
        (folder / f"{name}.json").write_text(
            json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        return [f"{name}.safetensors", f"{name}.json"]

    @classmethod
    def load(cls, folder: Path, name: str = "index", *, dim: int | None = None) -> VectorIndex:
        """Read an index written by :meth:`save`; ``dim`` is the size the encoder gives."""
        try:
            meta = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
            vectors = load_file(str(folder / f"{name}.safetensors"))["vectors"]
        except (OSError, KeyError, ValueError, SafetensorError) as exc:
            raise ArtifactError(f"{folder}: cannot read the {name!r} index: {exc}") from exc
        fields = meta if isinstance(meta, dict) else {}
        keys, texts, size = fields.get("keys"), fields.get("texts"), fields.get("dim")
        if not (
            isinstance(keys, list) and isinstance(texts, list) and len(texts) == len(keys)
            and isinstance(size, int) and not isinstance(size, bool)
        ):  # fmt: skip
            raise ArtifactError(
                f"{folder}: {name}.json must hold `dim` (an int) and `keys` and `texts` (lists "
                "of one length), as save() writes it; it was edited or damaged: save the "
                "skill again, or restore the file"
            )
        if vectors.shape != (len(keys), size):
            raise ArtifactError(
                f"{folder}: {name}.safetensors has shape {vectors.shape}, but {name}.json lists "
                f"{len(keys)} rows of size {size}; the index is inconsistent"
            )
        if dim is not None and size != dim:
            raise ArtifactError(
                f"{folder}: index vectors have size {size} but the encoder gives {dim}"
            )
        index = cls(size)
        index._vectors = vectors.astype(np.float32)
        index._keys = [str(k) for k in keys]
        index._texts = [str(t) for t in texts]
        index._regroup()
        return index


def _numpy_similarities(q: NDArray[np.float32], rows: NDArray[np.float32]) -> NDArray[np.float32]:
    """``q @ rows.T`` in numpy; few queries skip BLAS (see ``_NO_BLAS_QUERIES``)."""
    if len(q) <= _NO_BLAS_QUERIES:
        small: NDArray[np.float32] = np.einsum("ij,kj->ik", q, rows, optimize=False)
        return small
    out: NDArray[np.float32] = q @ rows.T
    return out
