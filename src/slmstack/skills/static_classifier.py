"""``StaticTextClassifier``: a classifier on static token embeddings, for a cascade's first tier.

Method: the encoder ``base`` is distilled once into one vector per token
(:mod:`slmstack.models.static`, the Model2Vec method; cached per base and ``dims``), a
text is the normalised mean of its token vectors, and a multinomial logistic-regression
head is fitted on those vectors. The confidence is calibrated by temperature scaling on a
validation split, as :class:`~slmstack.skills.classifier.TextClassifier` does, so a
cascade can accept its confident answers and escalate the rest to a transformer skill.

Why: a prediction is a tokenizer call, a gather and a sum, one matrix product and a
softmax: no attention, no torch. It is tens of times faster than MiniLM on a CPU and the
saved skill loads without torch (numpy, ``tokenizers``, safetensors), at the price of
accuracy: word order and context are lost. ``fit`` needs torch once per base to distil.

The skill folder carries the static matrix (``static.safetensors``, ``vocab x dims``
float32), the head and the base's ``tokenizer.json``, so loading needs no base model.
There is no out-of-scope model (unlike ``TextClassifier``): use the calibrated
confidence as the cascade's signal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from slmstack.artifacts import data_hash
from slmstack.data.splits import stratified_split
from slmstack.data.validation import drop_duplicates, validate_examples
from slmstack.errors import ArtifactError, DataError, MissingDependencyError
from slmstack.models.resolve import resolve
from slmstack.models.static import StaticEmbeddings, load_or_distill
from slmstack.skills._labels import saved_labels, write_labels
from slmstack.skills._ranked import ranked_predictions
from slmstack.skills._word_ngrams import WordNgrams
from slmstack.skills.base import Skill, Tensors
from slmstack.skills.kinds import LabelledTexts
from slmstack.skills.params import Check, Interval
from slmstack.training.calibration import softmax
from slmstack.types import Example, Prediction

_TOKENIZER = "tokenizer.json"
_NGRAMS = "ngrams.json"  # the word n-grams, in the head's column order
_MIN_DF = 2  # an n-gram must occur in two training texts to become a feature
_NO_KNOWN_TOKENS = "no token of the text is in the static vocabulary; the answer is the label prior"
# Texts per pass of the vectorised path. Its temporaries (the gathered token rows and
# n-gram weights) then stay in cache: on BANKING77's 3,080 test texts, one pass over all
# of them ran 8-23k texts/s, passes of 64 ran 41-49k (passes of 128-1,024: 26-47k).
_CHUNK = 64


class StaticTextClassifier(LabelledTexts, Skill):
    """Single-label classifier on static (distilled) token embeddings; predicts without torch.

    Example:
        >>> from slmstack import Example
        >>> from slmstack.skills.static_classifier import StaticTextClassifier
        >>> data = [Example("where is my card", "card"), Example("card not here", "card"),
        ...         Example("refund please", "refund"), Example("money back", "refund")]
        >>> clf = StaticTextClassifier(dims=128).fit(data)  # doctest: +SKIP
        >>> clf.predict(["my card never came"])[0].label  # doctest: +SKIP
        'card'
    """

    skill_name = "slmstack.StaticTextClassifier.v1"
    produces = frozenset({"label", "confidence", "scores"})
    fitted_attribute = "classes_"
    constraints: ClassVar[Mapping[str, Check]] = {
        "dims": Interval(int, 2, None),
        "top_k": Interval(int, 1, None),
        "head_c": Interval(float, 0, None, closed="neither"),
        "val_fraction": Interval(float, 0, 1, closed="neither"),
        "word_ngrams": Interval(int, 0, None),
        "ngram_scale": Interval(float, 0, None, closed="neither"),
    }

    def __init__(
        self,
        *,
        base: str = "minilm",  # the encoder distilled into static token vectors
        dims: int = 256,  # PCA width; model2vec's default, enough for intents
        head_c: float = 30.0,  # inverse L2 strength; static vectors need less shrinkage
        val_fraction: float = 0.1,
        top_k: int = 3,
        word_ngrams: int = 2,  # TF-IDF of word 1..n grams joined to the vector; 0: none
        ngram_scale: float = 0.5,  # their weight beside the static vector (validation)
        seed: int = 0,
        allow_pickle: bool = False,
    ):
        self.base = base
        self.word_ngrams = word_ngrams
        self.ngram_scale = ngram_scale
        self.dims = dims
        self.head_c = head_c
        self.val_fraction = val_fraction
        self.top_k = top_k
        self.seed = seed
        self.allow_pickle = allow_pickle

    # ------------------------------------------------------------------ fitting
    def fit(self, examples: Sequence[Example]) -> Self:
        """Distil (or load the cached) static embeddings, fit the head, calibrate it."""
        try:  # training needs the `train` extra; loading and predicting do not
            import sklearn.linear_model  # noqa: F401

            from slmstack.skills._classifier_training import validation_metrics
            from slmstack.training.calibration import fit_temperature
        except ImportError as exc:
            raise MissingDependencyError(
                exc.name or "torch", "train", "Training a StaticTextClassifier"
            ) from exc
        self._check_params()
        start = time.perf_counter()
        examples, duplicates = drop_duplicates(examples)
        validate_examples(examples)
        source = resolve(self.base, allow_pickle=self.allow_pickle)
        self.static_: StaticEmbeddings = load_or_distill(source, dims=self.dims)
        classes = sorted({ex.label for ex in examples})
        index = {c: i for i, c in enumerate(classes)}
        train, val = stratified_split(
            list(examples), [ex.label for ex in examples], fraction=self.val_fraction,
            seed=self.seed,
        )  # fmt: skip
        texts_train, texts_val = [ex.text for ex in train], [ex.text for ex in val]
        x_train = np.concatenate([self.static_.encode(c) for c in _chunks(texts_train)])
        y_train = np.array([index[ex.label] for ex in train], dtype=np.int64)
        y_val = np.array([index[ex.label] for ex in val], dtype=np.int64)
        grams = (
            WordNgrams.fit(texts_train, n=self.word_ngrams, min_df=_MIN_DF)
            if self.word_ngrams
            else None
        )
        # None when off, or when no n-gram occurs in two training texts (tiny data).
        self.ngrams_ = grams if grams is not None and len(grams) else None
        self.coef_, self.intercept_ = _fit_head(
            self._features(x_train, texts_train), y_train, len(classes), c=self.head_c,
            seed=self.seed,
        )  # fmt: skip
        self.ngram_coef_: NDArray[np.float32] | None = None
        if self.ngrams_ is not None:  # the head's n-gram columns, scaled as the features were
            dims = x_train.shape[1]
            self.ngram_coef_ = self.coef_[:, dims:] * np.float32(self.ngram_scale)
            self.coef_ = np.ascontiguousarray(self.coef_[:, :dims])
        self._ngram_coef_t = _transposed(self.ngram_coef_)
        val_logits = self._text_logits(texts_val)
        self.temperature_ = fit_temperature(val_logits, y_val)
        self.metrics_: dict[str, float] = {
            **validation_metrics(val_logits, y_val, self.temperature_),
            "n_train": float(len(train)),
            "n_val": float(len(val)),
        }
        self.distillation_ = {k: v for k, v in self.static_.meta.items() if k != "cached"}
        self.provenance_ = self._provenance(
            base=source.describe(),
            data_sha256=data_hash([(ex.text, ex.label) for ex in examples]),
            rows=len(examples),
            duplicates_dropped=duplicates,
            seconds=time.perf_counter() - start,
            metrics=self.metrics_,
            resumed=False,
        )
        self.classes_: list[str] = classes
        return self

    def _features(self, x: NDArray[np.float32], texts: Sequence[str]) -> Any:
        """The head's input: the static vectors, joined to the scaled n-gram TF-IDF."""
        if self.ngrams_ is None:
            return x
        from scipy import sparse

        grams = self.ngrams_.matrix(texts) * self.ngram_scale
        return sparse.hstack([sparse.csr_matrix(x), grams]).tocsr()

    def _logits(self, x: NDArray[np.float32], texts: Sequence[str]) -> NDArray[np.float32]:
        out: NDArray[np.float32] = x @ self.coef_.T + self.intercept_
        if self.ngrams_ is not None and self._ngram_coef_t is not None:
            out += self.ngrams_.scores(texts, self._ngram_coef_t)
        return out

    def _text_logits(self, texts: Sequence[str]) -> NDArray[np.float32]:
        parts = [self._logits(self.static_.encode(chunk), chunk) for chunk in _chunks(texts)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.coef_)), np.float32)

    # ------------------------------------------------------------------ predicting
    def predict_proba(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """Calibrated class probabilities, one row per text, columns in ``classes_`` order."""
        self._require_fitted()
        if any(not t.strip() for t in texts):
            raise DataError("predict_proba() got an empty text; use predict(), which abstains")
        if not texts:  # no rows, one column per class
            return np.zeros((0, len(self.classes_)), dtype=np.float64)
        return softmax(self._text_logits(texts), self.temperature_)

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Label, calibrated confidence and top-k scores for each text."""
        out: list[Prediction] = []
        for chunk in _chunks(texts):
            start = time.perf_counter()
            enc = self.static_.encode_counted(chunk)
            probs = softmax(self._logits(enc.vectors, chunk), self.temperature_)
            per_item_ms = (time.perf_counter() - start) * 1000 / len(chunk)
            out += ranked_predictions(
                probs, self.classes_, self.top_k, input_tokens=enc.n_tokens.tolist(),
                latency_ms=per_item_ms,
                warnings=[None if known else _NO_KNOWN_TOKENS for known in enc.n_known.tolist()],
            )  # fmt: skip
        return out

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], Tensors]:
        tensors: Tensors = {
            "head": {"weight": self.coef_, "bias": self.intercept_},
            "static": {"vectors": self.static_.vectors},
        }
        if self.ngrams_ is not None and self.ngram_coef_ is not None:
            tensors["ngrams"] = {"weight": self.ngram_coef_, "idf": self.ngrams_.idf}
        config = {
            "labels": self.classes_,
            "temperature": self.temperature_,
            "distillation": self.distillation_,
            "word_ngrams": None if self.ngrams_ is None else self.ngrams_.n,
        }
        return config, tensors

    def _write_extra(self, folder: Path) -> None:
        (folder / _TOKENIZER).write_text(self.static_.tokenizer_json, encoding="utf-8")
        write_labels(folder, self.classes_)
        if self.ngrams_ is not None:
            grams = json.dumps(self.ngrams_.columns(), ensure_ascii=False)
            (folder / _NGRAMS).write_text(grams + "\n", encoding="utf-8")

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        self.classes_ = saved_labels(folder, config)
        self.coef_ = np.asarray(tensors["head"]["weight"], dtype=np.float32)
        self.intercept_ = np.asarray(tensors["head"]["bias"], dtype=np.float32)
        if self.coef_.shape[0] != len(self.classes_):
            raise ArtifactError(
                f"{folder}: the head has {self.coef_.shape[0]} rows for "
                f"{len(self.classes_)} labels; the folder is inconsistent. Re-save the skill."
            )
        tokenizer_path = folder / _TOKENIZER
        if not tokenizer_path.is_file():
            raise ArtifactError(f"{folder} has no {_TOKENIZER}; re-save the skill.")
        self.distillation_ = dict(config["distillation"])
        self.static_ = StaticEmbeddings(
            tokenizer_path.read_text(encoding="utf-8"),
            np.asarray(tensors["static"]["vectors"], dtype=np.float32),
            dict(self.distillation_),
        )
        self.temperature_ = float(config["temperature"])
        self.metrics_ = dict(self.provenance_.metrics)
        self.ngrams_, self.ngram_coef_ = _restore_ngrams(
            config, tensors, folder, len(self.classes_)
        )
        self._ngram_coef_t = _transposed(self.ngram_coef_)

    def _card(self) -> dict[str, Any]:
        return {"Labels": ", ".join(self.classes_),
                "Static embeddings": self.distillation_}  # fmt: skip


def _fit_head(
    x: NDArray[np.float32], y: NDArray[np.int64], n_classes: int, *, c: float, seed: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Multinomial logistic regression as ``(coef [n_classes, d], bias [n_classes])``.

    A label absent from ``y`` gets a zero row and a very low bias, so it is never
    predicted by accident; two labels get the symmetric two-row form of the binary fit.
    """
    from sklearn.linear_model import LogisticRegression

    present = np.unique(y)
    coef = np.zeros((n_classes, x.shape[1]), dtype=np.float32)
    bias = np.full(n_classes, -1e4, dtype=np.float32)
    if len(present) == 1:  # one label: nothing to separate, always that label
        bias[present] = 0.0
        return coef, bias
    lr = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, y)
    if len(present) == 2:
        coef[present] = np.vstack([-lr.coef_[0], lr.coef_[0]]) / 2
        bias[present] = np.array([-lr.intercept_[0], lr.intercept_[0]]) / 2
    else:
        coef[present] = lr.coef_
        bias[present] = lr.intercept_
    return coef, bias


def _restore_ngrams(
    config: Mapping[str, Any], tensors: Tensors, folder: Path, n_labels: int
) -> tuple[WordNgrams | None, NDArray[np.float32] | None]:
    """The saved n-gram features and their head columns (``None`` when the skill has none)."""
    n = config.get("word_ngrams")
    if not n:  # none, or a skill saved before the static tier had them
        return None, None
    path = folder / _NGRAMS
    if not path.is_file() or "ngrams" not in tensors:
        raise ArtifactError(f"{folder}: word_ngrams={n} but {_NGRAMS} or its tensors are missing")
    columns = json.loads(path.read_text(encoding="utf-8"))
    weight = np.asarray(tensors["ngrams"]["weight"], dtype=np.float32)
    idf = np.asarray(tensors["ngrams"]["idf"], dtype=np.float32)
    if weight.shape != (n_labels, len(columns)) or idf.shape != (len(columns),):
        raise ArtifactError(
            f"{folder}: {len(columns)} n-grams in {_NGRAMS} against weights {weight.shape} "
            f"and idf {idf.shape}; the folder is inconsistent. Re-save the skill."
        )
    return WordNgrams({g: i for i, g in enumerate(columns)}, idf, int(n)), weight


def _chunks(texts: Sequence[str]) -> list[Sequence[str]]:
    """``texts`` in consecutive slices of ``_CHUNK``."""
    return [texts[i : i + _CHUNK] for i in range(0, len(texts), _CHUNK)]


def _transposed(coef: NDArray[np.float32] | None) -> NDArray[np.float32] | None:
    """Classes x n-grams -> n-grams x classes, C-contiguous (see ``WordNgrams.scores``)."""
    return None if coef is None else np.ascontiguousarray(coef.T)
