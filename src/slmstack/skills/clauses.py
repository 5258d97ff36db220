"""``ClauseFinder``: which clause types a contract contains, and where.

The contract is split into clauses (paragraphs; headings joined to their body; long
paragraphs cut at sentence ends). Each gets zero or more types from one-vs-rest
logistic regressions over TF-IDF word n-grams (legal drafting is formulaic: "governed by
the laws of") joined with the frozen encoder's vector of the clause (paraphrases), scaled
by ``encoder_weight``. Each type has its own decision threshold, chosen to maximise that
type's F1, since types range from common (Governing Law) to rare (Joint IP Ownership).

The thresholds are tuned by cross-fitting (``val_folds``, default 5): every training
contract is held out once, scored by a regression fitted on the other folds; each type's
threshold maximises F1 over those out-of-fold scores. Folds hold out whole contracts when
the clauses name them; ``val_folds=1`` tunes on one held-out ``val_fraction`` instead.

Where the clause sits in its contract (first, second, third, among the last three, and
its place in ten bins) joins the features too, scaled by ``position_weight``: Document
Name, Parties and Agreement Date open a contract, and a clause read alone does not say so.
Clauses from whole contracts carry their position (:func:`~slmstack.data.clauses.
label_clauses`, split with the finder's ``min_chars``/``max_chars``); ``predict`` splits alike.

With an encoder, each type also chooses on those out-of-fold scores whether to use the
encoder's vector at all: a regression over the TF-IDF columns alone is fitted beside the
joined one, and the type keeps the encoder only when its F1 is at least as good (ties keep
it). On CUAD the vector helped rare, paraphrase-heavy types (Non-Compete, Rofr/Rofo/Rofn)
and cost precision on common, formulaic ones (Audit Rights, License Grant), where the
TF-IDF-only regression then decides.

The defaults were chosen on CUAD validation contracts (``bench/cuad_explore/``: fit on
90 contracts, score 30 others, the test contracts not read): cross-fitting lifted clause
micro/macro F1 from 56.4/37.9 to 57.5/42.9 (the TF-IDF peer from 58.1/36.2 to 59.4/39.8),
and an encoder weight of 0.25 (of 1, 0.5, 0.25, 0.125) to 59.8/40.6. 384 dense columns
at full weight let the L2-regularised regression fit noise on the common types; scaled
down, a type leans on them only where they pay. The position columns at weight 0.5 (of
0, 0.5 and 1; chosen by validation micro F1) lifted it from 59.8/40.6 to 62.0/41.0 (at 1:
61.6/39.8), and TF-IDF alone from 59.4/39.8 to 61.5/40.8 (``bench/cuad_explore/position.py``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from slmstack.artifacts import data_hash
from slmstack.data.clauses import ClauseExample, document_of, split_clauses
from slmstack.data.documents import read_clause_examples
from slmstack.data.validation import drop_duplicates
from slmstack.errors import ConfigError, DataError
from slmstack.skills._clause_fit import (
    best_threshold,
    fit_per_type,
    fit_words,
    folds,
    position_block,
    proba,
    refuse_types_on_every_clause,
)
from slmstack.skills._clause_output import contract_prediction
from slmstack.skills._frozen import FrozenEncoder
from slmstack.skills.base import Skill, Tensors, check_texts
from slmstack.skills.params import Check, Interval
from slmstack.types import Prediction, Usage


def _f1(pred: NDArray[np.bool_], y: NDArray[np.int64]) -> float:
    """F1 of ``pred`` against ``y`` (1.0 when both are empty)."""
    tp = int((pred & (y == 1)).sum())
    wrong = int((pred & (y == 0)).sum()) + int((~pred & (y == 1)).sum())
    return 2 * tp / (2 * tp + wrong) if tp + wrong else 1.0


class ClauseFinder(Skill):
    """Multi-label clause-type tagger for contracts.

    Example:
        >>> finder = ClauseFinder().fit(clauses)  # doctest: +SKIP
        >>> p = finder.predict([contract_text], types=["Governing Law"])[0]  # doctest: +SKIP
        >>> [(s.label, s.text[:30]) for s in p.spans], p.data["absent"]  # doctest: +SKIP
    """

    skill_name = "slmstack.ClauseFinder.v1"
    produces = frozenset({"spans", "data"})
    reads_documents = True
    fitted_attribute = "coef_"
    # A finder saved before these parameters existed was fitted this way.
    saved_defaults: ClassVar[Mapping[str, Any]] = {
        "encoder_weight": 1.0, "val_folds": 1, "position_weight": 0.0,
    }  # fmt: skip
    constraints: ClassVar[Mapping[str, Check]] = {
        **dict.fromkeys(("c", "encoder_weight"), Interval(float, 0, None, closed="neither")),
        **dict.fromkeys(("max_features", "min_df", "min_chars", "batch_size", "val_folds"),
                        Interval(int, 1, None)),
        "max_chars": Interval(int, 2, None),
        "max_length": Interval(int, 8, None),
        "position_weight": Interval(float, 0, None, closed="left"),
        "val_fraction": Interval(float, 0, 1, closed="neither"),
    }  # fmt: skip

    def __init__(
        self,
        *,
        base: str | None = "minilm",  # None: TF-IDF only (no encoder; fast, weaker)
        c: float = 4.0,  # inverse L2 strength of each type's logistic regression
        max_features: int = 50_000,  # TF-IDF vocabulary size (1-2 grams, most frequent)
        min_df: int = 2,  # n-grams in fewer clauses than this are left out
        val_fraction: float = 0.2,  # held out to tune each type's threshold (val_folds=1)
        val_folds: int = 5,  # >1: every contract held out once, by one of this many fits
        min_chars: int = 40,  # shorter paragraphs (headings) join the next one
        max_chars: int = 1500,  # longer paragraphs are cut at sentence ends
        max_length: int = 128,  # encoder tokens per clause; TF-IDF reads it all
        encoder_weight: float = 0.25,  # scale of the encoder's vector against TF-IDF's
        position_weight: float = 0.5,  # scale of the clause-position columns (0: none)
        batch_size: int = 32,
        seed: int = 0,
        allow_pickle: bool = False,
    ):
        self.base = base
        self.c = c
        self.max_features = max_features
        self.min_df = min_df
        self.val_fraction = val_fraction
        self.val_folds = val_folds
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.max_length = max_length
        self.encoder_weight = encoder_weight
        self.position_weight = position_weight
        self.batch_size = batch_size
        self.seed = seed
        self.allow_pickle = allow_pickle

    def _check_params(self) -> None:
        super()._check_params()
        if self.min_chars >= self.max_chars:
            raise ConfigError(
                f"The 'min_chars' parameter of ClauseFinder must be an int below max_chars "
                f"= {self.max_chars}. Got {self.min_chars!r} instead."
            )

    @classmethod
    def read_training_data(
        cls, path: Path, *, min_chars: int = 40, max_chars: int = 1500
    ) -> list[ClauseExample]:
        """JSONL of labelled clauses, or of whole contracts (split as the finder splits)."""
        return read_clause_examples(path, min_chars=min_chars, max_chars=max_chars)

    def evaluate(self, data: Path, **options: Any) -> dict[str, Any]:
        """Clause-level precision, recall and F1 per type and micro, and speed."""
        from slmstack.evaluation.extraction import evaluate_clauses

        return evaluate_clauses(self, data, **options)

    def _encoder(self, expect_sha256: str | None = None) -> FrozenEncoder | None:
        if not self.base:
            return None
        return FrozenEncoder(
            self.base, max_length=self.max_length, batch_size=self.batch_size,
            allow_pickle=self.allow_pickle, expect_sha256=expect_sha256,
        )  # fmt: skip

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

    def _features(
        self, texts: Sequence[str], positions: Sequence[tuple[int, int] | None] | None = None
    ) -> Any:
        """TF-IDF, then the encoder's vectors (if any), then the position columns (if on)."""
        from scipy import sparse

        if positions is not None and len(positions) != len(texts):
            raise ConfigError(
                f"{len(positions)} positions for {len(texts)} clauses; pass one "
                "(index, count) or None per clause"
            )
        blocks = [self.tfidf_.transform(list(texts))]
        if self.encoder_ is not None:
            self.encoder_.cache(texts, desc="encode clauses")
            dense = [self.encoder_.vector(t) for t in texts]
            width = self.encoder_.dim
            blocks.append(sparse.csr_matrix(
                np.stack(dense) * self.encoder_weight if dense else np.zeros((0, width))
            ))  # fmt: skip
        if self.position_weight:
            where = positions if positions is not None else [None] * len(texts)
            blocks.append(sparse.csr_matrix(position_block(where, self.position_weight)))
        return sparse.hstack(blocks).tocsr() if len(blocks) > 1 else blocks[0].tocsr()

    # ------------------------------------------------------------------ fitting
    def fit(self, examples: Sequence[ClauseExample]) -> Self:
        """Learn each clause type from labelled clauses (clauses with no type included)."""
        self._check_params()
        if not examples:
            raise DataError("no training clauses; pass ClauseExample(text, labels) items")
        # A re-filed copy of a clause (another position) is still a copy: the first is kept.
        placeless = [replace(ex, position=None) for ex in examples]
        kept, dropped = drop_duplicates(placeless)
        row = {id(ex): i for i, ex in enumerate(placeless)}
        examples = [examples[row[id(ex)]] for ex in kept] if self.position_weight else kept
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
        refuse_types_on_every_clause(types, y)
        self.tfidf_ = fit_words(self._vectorizer(), texts, self.min_df)
        self.encoder_ = self._encoder()
        x = self._features(texts, [ex.position for ex in examples])
        folds = self._held_out(examples)
        vocab = len(self.tfidf_.vocabulary_)  # the columns without the encoder's vector:
        plain = np.r_[0:vocab, vocab + (self.encoder_.dim if self.encoder_ else 0) : x.shape[1]]
        words = x[:, plain] if self.encoder_ is not None else x
        p_all = np.zeros(y.shape)  # each row scored by the fit that did not see its contract
        p_words_all = np.zeros(y.shape) if self.encoder_ is not None else p_all
        for tr, va in folds:
            p_all[va] = self._proba(x[va], *self._fit_lr(x[tr], y[tr]))
            if self.encoder_ is not None:  # per type: keep the encoder only where it helps
                p_words_all[va] = self._proba(words[va], *self._fit_lr(words[tr], y[tr]))
        va = np.unique(np.concatenate([v for _, v in folds]))
        p_val, p_words, y_va = p_all[va], p_words_all[va], y[va]
        self.thresholds_ = np.array(
            [self._best_threshold(p_val[:, j], y_va[:, j]) for j in range(len(types))]
        )
        self.uses_encoder_ = np.full(len(types), self.encoder_ is not None)
        if self.encoder_ is not None:
            for j in range(len(types)):
                t_words = self._best_threshold(p_words[:, j], y_va[:, j])
                if _f1(p_words[:, j] >= t_words, y_va[:, j]) > _f1(
                    p_val[:, j] >= self.thresholds_[j], y_va[:, j]
                ):
                    self.uses_encoder_[j] = False
                    p_val[:, j], self.thresholds_[j] = p_words[:, j], t_words
        self.metrics_: dict[str, float] = {
            "val_micro_f1": _f1(p_val >= self.thresholds_, y_va),
            "n_train": float(len(examples) - len(folds[0][1])),
            "n_val": float(len(va)),
            "val_folds": float(len(folds)),
            "types_using_encoder": float(self.uses_encoder_.sum()),
            "clauses_with_position": float(sum(ex.position is not None for ex in examples)),
        }
        joined = self.uses_encoder_ if self.encoder_ is not None else None  # None: every type
        self.coef_, self.bias_ = self._fit_lr(x, y, only=joined)
        if self.encoder_ is not None and not self.uses_encoder_.all():  # TF-IDF-only refit
            off = ~self.uses_encoder_
            coef_w, bias_w = self._fit_lr(words, y, only=off)
            self.coef_[off] = 0.0
            self.coef_[np.ix_(np.flatnonzero(off), plain)] = coef_w[off]
            self.bias_[off] = bias_w[off]
        rows = [(ex.text, *ex.labels) for ex in examples]
        self.provenance_ = self._provenance(
            base=self.encoder_.source.describe() if self.encoder_ else {},
            data_sha256=data_hash(rows), rows=len(rows), duplicates_dropped=dropped,
            seconds=time.perf_counter() - start, metrics=self.metrics_,
        )  # fmt: skip
        return self

    def _held_out(
        self, examples: Sequence[ClauseExample]
    ) -> list[tuple[NDArray[np.int64], NDArray[np.int64]]]:
        """(rows to fit on, rows to score) for each fit that tunes the thresholds."""
        docs = [document_of(ex) for ex in examples]
        return folds(docs, self.val_folds, self.val_fraction, self.seed)

    def _fit_lr(
        self, x: Any, y: NDArray[np.int64], *, only: NDArray[np.bool_] | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """One regression per type (``only``: just those types; the others stay unfitted)."""
        return fit_per_type(x, y, c=self.c, seed=self.seed, only=only)

    _proba = staticmethod(proba)
    _best_threshold = staticmethod(best_threshold)

    # ------------------------------------------------------------------ predicting
    def predict_clauses(
        self,
        clauses: Sequence[str],
        *,
        positions: Sequence[tuple[int, int] | None] | None = None,
    ) -> NDArray[np.float64]:
        """Probability of each type (columns in ``types_`` order) for ready-split clauses.

        ``positions`` gives each clause's ``(index, count)`` in its contract, or ``None``
        where unknown (then the clause is judged on its text alone, as when it is omitted).
        """
        self._require_fitted()
        check_texts(clauses)
        return self._proba(self._features(clauses, positions), self.coef_, self.bias_)

    def _columns(self, types: Sequence[str] | None) -> list[int]:
        wanted = list(types) if types is not None else self.types_
        unknown = sorted(set(wanted) - set(self.types_))
        if unknown:
            raise ConfigError(f"unknown clause types {unknown}; this finder knows {self.types_}")
        return [self.types_.index(t) for t in wanted]

    def predict(
        self, texts: Sequence[str], *, types: Sequence[str] | None = None
    ) -> list[Prediction]:
        """Clause spans with their types and confidences, and the requested types absent.

        ``types`` limits the answer to some clause types (default: all learned ones).
        ``data["clauses"]`` lists every clause that has a type; ``data["absent"]`` the
        requested types found nowhere; ``confidence`` is the least sure of those
        present/absent decisions. Empty texts abstain with ``"empty_input"``.
        """
        self._require_fitted()
        self._columns(types)  # unknown types are refused even when every text is empty
        return self._guarded(texts, lambda t: self._predict(t, types))

    def _predict(
        self, texts: Sequence[str], types: Sequence[str] | None = None
    ) -> list[Prediction]:
        cols = self._columns(types)
        out = []
        for text in texts:
            start_t = time.perf_counter()
            bounds = split_clauses(text, min_chars=self.min_chars, max_chars=self.max_chars)
            clauses = [text[a:b] for a, b in bounds]
            where = [(k, len(clauses)) for k in range(len(clauses))]
            p = (
                self.predict_clauses(clauses, positions=where)
                if clauses
                else np.zeros((0, len(self.types_)))
            )
            tokens = sum(map(self.encoder_.n_tokens, clauses)) if self.encoder_ else 0
            usage = Usage(input_tokens=tokens, latency_ms=(time.perf_counter() - start_t) * 1000)
            out.append(contract_prediction(
                text, bounds, p, types=self.types_, thresholds=self.thresholds_, cols=cols,
                usage=usage,
            ))  # fmt: skip
        return out

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], Tensors]:
        config = {
            "types": self.types_,
            "thresholds": dict(zip(self.types_, map(float, self.thresholds_), strict=True)),
            "uses_encoder": dict(zip(self.types_, map(bool, self.uses_encoder_), strict=True)),
        }
        tensors: Tensors = {
            "clauses": {
                "coef": self.coef_,
                "bias": self.bias_,
                "idf": self.tfidf_.idf_.astype(np.float64),
            }
        }
        return config, tensors

    def _write_extra(self, folder: Path) -> None:
        vocab = {k: int(v) for k, v in self.tfidf_.vocabulary_.items()}
        (folder / "vocabulary.json").write_text(
            json.dumps(vocab, ensure_ascii=False), encoding="utf-8"
        )

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        self.types_ = [str(t) for t in config["types"]]
        thresholds = config["thresholds"]
        self.thresholds_ = np.array([float(thresholds[t]) for t in self.types_])
        uses = config.get("uses_encoder") or {}  # absent in skills saved before the choice
        self.uses_encoder_ = np.array([bool(uses.get(t, self.base)) for t in self.types_])
        weights = tensors["clauses"]
        self.coef_, self.bias_ = weights["coef"], weights["bias"]
        vocab = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
        self.tfidf_ = self._vectorizer(vocab)
        self.tfidf_.idf_ = weights["idf"].astype(np.float64)
        self.metrics_ = dict(self.provenance_.metrics)
        self.encoder_ = self._encoder(expect_sha256=self.provenance_.base.get("sha256"))

    def _card(self) -> dict[str, Any]:
        joined = [t for t, used in zip(self.types_, self.uses_encoder_, strict=True) if used]
        return {
            "Method": "one-vs-rest logistic regression over TF-IDF 1-2 grams"
            + (" and frozen encoder vectors" if self.encoder_ else "")
            + (" and the clause's position in its contract" if self.position_weight else "")
            + "; per-type thresholds tuned on clauses of held-out contracts"
            + (f" ({self.val_folds}-fold cross-fitting)" if self.val_folds > 1 else ""),
            "Clause types": ", ".join(self.types_),
            "Thresholds": dict(zip(self.types_, map(float, self.thresholds_), strict=True)),
            "Types using the encoder (chosen on the held-out split)": ", ".join(joined) or "none",
        }
