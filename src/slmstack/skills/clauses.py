"""``ClauseFinder``: which clause types a contract contains, and where.

The contract is split into clauses (paragraphs; headings joined to their body; long
paragraphs cut at sentence ends). Each clause gets zero or more types from one-vs-rest
logistic regressions over TF-IDF word n-grams (legal drafting is formulaic: "governed by
the laws of") joined with the frozen encoder's vector of the clause (paraphrases). Each
type has its own decision threshold, chosen on a held-out split to maximise that type's
F1, since types range from common (Governing Law) to rare (Joint IP Ownership).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray
from safetensors.numpy import load_file, save_file

from slmstack import registry
from slmstack.errors import ConfigError, DataError, NotFittedError
from slmstack.data.clauses import ClauseExample, split_clauses
from slmstack.skills._frozen import FrozenEncoder
from slmstack.artifacts import (
    data_hash,
    library_versions,
    read_verified_config,
    write_config,
    write_model_card,
)
from slmstack.skills.base import Skill, check_texts
from slmstack.types import Prediction, Span, Usage

_NAME = "slmstack.ClauseFinder.v1"
_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


@registry.skills.register(_NAME)
class ClauseFinder(Skill):
    """Multi-label clause-type tagger for contracts.

    Example:
        >>> finder = ClauseFinder().fit(clauses)  # doctest: +SKIP
        >>> p = finder.predict([contract_text], types=["Governing Law"])[0]  # doctest: +SKIP
        >>> [(s.label, s.text[:30]) for s in p.spans], p.data["absent"]  # doctest: +SKIP
    """

    skill_name = _NAME

    def __init__(
        self,
        *,
        base: str | None = "minilm",  # None: TF-IDF only (no encoder; fast, weaker)
        c: float = 4.0,  # inverse L2 strength of each type's logistic regression
        max_features: int = 50_000,
        min_df: int = 2,
        val_fraction: float = 0.2,
        min_chars: int = 40,  # shorter paragraphs (headings) join the next one
        max_chars: int = 1500,  # longer paragraphs are cut at sentence ends
        max_length: int = 128,  # encoder tokens per clause; TF-IDF reads it all
        batch_size: int = 32,
        seed: int = 0,
        allow_pickle: bool = False,
    ):
        self.base = base
        self.c = c
        self.max_features = max_features
        self.min_df = min_df
        self.val_fraction = val_fraction
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.max_length = max_length
        self.batch_size = batch_size
        self.seed = seed
        self.allow_pickle = allow_pickle

    _PARAMS = ("base", "c", "max_features", "min_df", "val_fraction", "min_chars", "max_chars",
               "max_length", "batch_size", "seed", "allow_pickle")  # fmt: skip

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as passed to ``__init__``."""
        return {k: getattr(self, k) for k in self._PARAMS}

    def _check_params(self) -> None:
        if not self.c > 0:
            raise ConfigError(f"The 'c' parameter of ClauseFinder must be > 0. Got {self.c!r}.")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(
                f"The 'val_fraction' parameter of ClauseFinder must be in (0, 1). "
                f"Got {self.val_fraction!r} instead."
            )
        if not 0 < self.min_chars < self.max_chars:
            raise ConfigError(
                f"ClauseFinder needs 0 < min_chars < max_chars. Got {self.min_chars!r} and "
                f"{self.max_chars!r}."
            )

    # ------------------------------------------------------------------ features
    def _vectorizer(self, vocabulary: dict[str, int] | None = None) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(
            ngram_range=(1, 2),
            sublinear_tf=True,
            min_df=1 if vocabulary else self.min_df,
            max_features=None if vocabulary else self.max_features,
            vocabulary=vocabulary,
            dtype=np.float32,
        )

    def _features(self, texts: Sequence[str]) -> Any:
        from scipy import sparse

        x = self.tfidf_.transform(list(texts))
        if self.encoder_ is None:
            return x.tocsr()
        self.encoder_.cache(texts, desc="encode clauses")
        dense = np.stack([self.encoder_.vector(t) for t in texts]) if texts else None
        if dense is None:
            return x.tocsr()
        return sparse.hstack([x, sparse.csr_matrix(dense)]).tocsr()

    # ------------------------------------------------------------------ fitting
    def fit(self, examples: Sequence[ClauseExample]) -> Self:
        """Learn each clause type from labelled clauses (clauses with no type included)."""
        self._check_params()
        if not examples:
            raise DataError("no training clauses; pass ClauseExample(text, labels) items")
        types = sorted({lab for ex in examples for lab in ex.labels})
        if not types:
            raise DataError(
                f"none of the {len(examples)} clauses has a type; the finder has nothing to "
                "learn. Label some clauses (CUAD: the snippets of each category)."
            )
        start = time.perf_counter()
        self.types_: list[str] = types
        texts = [ex.text for ex in examples]
        y = np.array([[t in ex.labels for t in types] for ex in examples], dtype=np.int64)
        self.tfidf_ = self._vectorizer().fit(texts)
        self.encoder_ = (
            FrozenEncoder(self.base, max_length=self.max_length, batch_size=self.batch_size,
                          allow_pickle=self.allow_pickle)
            if self.base else None
        )  # fmt: skip
        x = self._features(texts)
        order = np.random.default_rng(self.seed).permutation(len(examples))
        n_val = max(1, int(self.val_fraction * len(examples)))
        tr, va = np.sort(order[n_val:]), np.sort(order[:n_val])
        coef, bias = self._fit_lr(x[tr], y[tr])
        p_val = self._proba(x[va], coef, bias)
        self.thresholds_ = np.array(
            [self._best_threshold(p_val[:, j], y[va, j]) for j in range(len(types))]
        )
        pred = p_val >= self.thresholds_
        tp = int((pred & (y[va] == 1)).sum())
        fp, fn = int((pred & (y[va] == 0)).sum()), int((~pred & (y[va] == 1)).sum())
        self.metrics_: dict[str, float] = {
            "val_micro_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
            "n_train": float(len(tr)),
            "n_val": float(len(va)),
        }
        self.coef_, self.bias_ = self._fit_lr(x, y)
        self.train_seconds_ = time.perf_counter() - start
        rows = [(ex.text, *ex.labels) for ex in examples]
        self.data_sha256_, self.data_rows_ = data_hash(rows), len(rows)
        return self

    def _fit_lr(
        self, x: Any, y: NDArray[np.int64]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        from sklearn.linear_model import LogisticRegression

        coef = np.zeros((y.shape[1], x.shape[1]), dtype=np.float32)
        bias = np.full(y.shape[1], -20.0, dtype=np.float32)  # a type never seen: never fires
        for j in range(y.shape[1]):
            if 0 < y[:, j].sum() < len(y):
                lr = LogisticRegression(
                    C=self.c, solver="liblinear", dual=x.shape[0] < x.shape[1],
                    random_state=self.seed, max_iter=1000,
                )  # fmt: skip
                lr.fit(x, y[:, j])
                coef[j], bias[j] = lr.coef_[0], lr.intercept_[0]
        return coef, bias

    @staticmethod
    def _proba(x: Any, coef: NDArray[np.float32], bias: NDArray[np.float32]) -> NDArray[np.float64]:
        z = np.asarray(x @ coef.T.astype(np.float64)) + bias
        out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-z))
        return out

    @staticmethod
    def _best_threshold(p: NDArray[np.float64], y: NDArray[np.int64]) -> float:
        if y.sum() < 2:  # too few held-out examples to tune on: the calibrated default
            return 0.5
        f1 = [2 * ((p >= t) & (y == 1)).sum() / max(1, (p >= t).sum() + y.sum()) for t in _GRID]
        return float(_GRID[int(np.argmax(f1))])

    # ------------------------------------------------------------------ predicting
    def _require_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError(
                "This ClauseFinder is not fitted yet. Call fit(clauses) or "
                "ClauseFinder.load(folder) first."
            )

    def predict_clauses(self, clauses: Sequence[str]) -> NDArray[np.float64]:
        """Probability of each type (columns in ``types_`` order) for ready-split clauses."""
        self._require_fitted()
        check_texts(clauses)
        return self._proba(self._features(clauses), self.coef_, self.bias_)

    def predict(
        self, texts: Sequence[str], *, types: Sequence[str] | None = None
    ) -> list[Prediction]:
        """Clause spans with their types and confidences, and the requested types absent.

        ``types`` limits the answer to some clause types (default: all learned ones).
        ``data["clauses"]`` lists every clause that has a type; ``data["absent"]`` the
        requested types found nowhere; ``confidence`` is the least sure of those
        present/absent decisions.
        """
        self._require_fitted()
        check_texts(texts)
        wanted = list(types) if types is not None else self.types_
        unknown = sorted(set(wanted) - set(self.types_))
        if unknown:
            raise ConfigError(f"unknown clause types {unknown}; this finder knows {self.types_}")
        cols = [self.types_.index(t) for t in wanted]
        out = []
        for text in texts:
            start_t = time.perf_counter()
            bounds = split_clauses(text, min_chars=self.min_chars, max_chars=self.max_chars)
            clauses = [text[a:b] for a, b in bounds]
            p = self.predict_clauses(clauses) if clauses else np.zeros((0, len(self.types_)))
            spans, tagged, decision = [], [], []
            for j in cols:
                hit = p[:, j] >= self.thresholds_[j]
                best = float(p[:, j].max()) if len(p) else 0.0
                decision.append(best if hit.any() else 1.0 - best)
                for row in np.flatnonzero(hit):
                    a, b = bounds[int(row)]
                    spans.append(Span(self.types_[j], a, b, text[a:b], float(p[row, j])))
            for k, (a, b) in enumerate(bounds):
                found = [
                    {"type": self.types_[j], "confidence": float(p[k, j])}
                    for j in cols
                    if p[k, j] >= self.thresholds_[j]
                ]
                if found:
                    tagged.append({"start": a, "end": b, "types": found})
            present = {s.label for s in spans}
            out.append(
                Prediction(
                    confidence=min(decision, default=1.0),
                    spans=tuple(sorted(spans, key=lambda s: (s.start, s.label))),
                    data={
                        "clauses": tagged,
                        "absent": [t for t in wanted if t not in present],
                        "n_clauses": len(bounds),
                    },
                    usage=Usage(
                        input_tokens=sum(self.encoder_.n_tokens(c) for c in clauses)
                        if self.encoder_
                        else 0,
                        latency_ms=(time.perf_counter() - start_t) * 1000,
                    ),
                )
            )
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write weights and TF-IDF statistics (safetensors), vocabulary, config and card."""
        self._require_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {
                "coef": self.coef_,
                "bias": self.bias_,
                "thresholds": self.thresholds_.astype(np.float64),
                "idf": self.tfidf_.idf_.astype(np.float64),
            },
            str(folder / "clauses.safetensors"),
        )
        vocab = {k: int(v) for k, v in self.tfidf_.vocabulary_.items()}
        (folder / "vocabulary.json").write_text(json.dumps(vocab, ensure_ascii=False))
        config = {
            "skill": _NAME,
            "params": self.get_params(),
            "types": self.types_,
            "base": self.encoder_.provenance() if self.encoder_ else None,
            "metrics": self.metrics_,
            "thresholds": dict(zip(self.types_, map(float, self.thresholds_), strict=True)),
            "train_seconds": self.train_seconds_,
            "data": {"sha256": self.data_sha256_, "rows": self.data_rows_},
            "versions": library_versions(),
        }
        write_config(folder, config, ["clauses.safetensors", "vocabulary.json"])
        write_model_card(
            folder,
            "ClauseFinder",
            {
                "Method": "one-vs-rest logistic regression over TF-IDF 1-2 grams"
                + (" and frozen encoder vectors" if self.encoder_ else "")
                + "; per-type thresholds tuned on a held-out split",
                "Clause types": ", ".join(self.types_),
                "Base model": self.encoder_.provenance() if self.encoder_ else "none",
                "Training data": {"sha256": self.data_sha256_, "rows": self.data_rows_},
                "Held-out metrics": {k: round(v, 4) for k, v in self.metrics_.items()},
                "Library versions": library_versions(),
            },
        )
        return folder

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Rebuild a finder saved with :meth:`save` (files verified by sha256)."""
        folder = Path(path)
        config = read_verified_config(folder, _NAME, "ClauseFinder")
        self = cls(**config["params"])
        tensors = load_file(str(folder / "clauses.safetensors"))
        vocab = json.loads((folder / "vocabulary.json").read_text())
        self.tfidf_ = self._vectorizer(vocab)
        self.tfidf_.idf_ = tensors["idf"].astype(np.float64)
        self.encoder_ = (
            FrozenEncoder(self.base, max_length=self.max_length, batch_size=self.batch_size,
                          allow_pickle=self.allow_pickle, expect_sha256=config["base"]["sha256"])
            if self.base else None
        )  # fmt: skip
        self.types_ = list(config["types"])
        self.coef_, self.bias_ = tensors["coef"], tensors["bias"]
        self.thresholds_ = tensors["thresholds"].astype(np.float64)
        self.metrics_ = dict(config["metrics"])
        self.train_seconds_ = float(config["train_seconds"])
        self.data_sha256_ = config["data"]["sha256"]
        self.data_rows_ = int(config["data"]["rows"])
        return self
