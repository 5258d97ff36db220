"""``TextClassifier``: one label per text (intent, sentiment, complaint or not, ...).

Two strategies:

* ``head``: the encoder stays frozen; a multinomial logistic-regression head is fitted
  on its sentence vectors. Trains in seconds and keeps the base model shareable.
* ``finetune``: the whole encoder is trained with a low learning rate, warm-up, a
  validation split, early stopping and the best epoch kept. The head starts from the
  ``head`` solution (linear probing, then fine-tuning), which converges faster and
  forgets less of the pretrained features than a random head.

Either way the confidence is calibrated by temperature scaling on the validation split,
and a scope model (``_scope.py``) flags texts unlike the training data: their prediction
abstains with ``"out_of_scope"`` when their p-value is below ``scope_alpha``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from slmstack import registry
from slmstack.data.splits import stratified_split
from slmstack.data.validation import validate_examples
from slmstack.errors import ConfigError, DataError, NotFittedError
from slmstack.models.encoder import (
    Tokenized,
    load_encoder,
    load_tokenizer,
    model_window,
    tokenize,
)
from slmstack.models.resolve import ModelSource, resolve
from slmstack.skills._classifier_io import restore_classifier, save_classifier
from slmstack.skills._classifier_params import check_params
from slmstack.skills._classifier_training import (
    ClassifierNet,
    finetune,
    fit_probe,
    forward_all,
    grow_head,
)
from slmstack.skills._scope import ScopeModel, fit_scope
from slmstack.artifacts import (
    data_hash,
    read_verified_config,
)
from slmstack.skills.base import Skill, check_texts
from slmstack.training.calibration import expected_calibration_error, fit_temperature, softmax
from slmstack.training.loop import LoopConfig, LoopResult
from slmstack.types import Example, LabelScore, Prediction, Usage

Strategy = Literal["head", "finetune"]
_NAME = "slmstack.TextClassifier.v1"


@registry.skills.register(_NAME)
class TextClassifier(Skill):
    """Single-label text classifier on a pretrained encoder.

    Example:
        >>> from slmstack import TextClassifier, Example
        >>> data = [Example("where is my card", "card"), Example("card not here", "card"),
        ...         Example("refund please", "refund"), Example("money back", "refund")]
        >>> clf = TextClassifier(strategy="head").fit(data)  # doctest: +SKIP
        >>> clf.predict(["my card never came"])[0].label  # doctest: +SKIP
        'card'
    """

    skill_name = _NAME

    def __init__(
        self,
        *,
        base: str = "minilm",
        strategy: Strategy = "head",
        max_length: int = 128,  # intents and reviews are short; longer inputs are reported
        epochs: int = 5,
        learning_rate: float = 5e-5,  # low, so fine-tuning refines rather than erases
        head_learning_rate: float = 1e-3,  # the head starts from the probe and moves faster
        warmup_ratio: float = 0.1,
        weight_decay: float = 0.01,
        batch_size: int = 32,
        dropout: float = 0.1,
        label_smoothing: float = 0.0,
        patience: int = 2,
        val_fraction: float = 0.1,
        metric: Literal["accuracy", "macro_f1"] = "accuracy",
        head_c: float = 10.0,  # inverse L2 strength of the probe; 10 is best on BANKING77
        normalize: bool = True,  # all-MiniLM vectors are trained for cosine geometry
        precision: Literal["fp32", "bf16"] = "fp32",
        top_k: int = 3,
        scope_alpha: float = 0.01,  # share of in-scope texts flagged out of scope, by design
        seed: int = 0,
        allow_pickle: bool = False,
    ):
        self.base = base
        self.strategy = strategy
        self.max_length = max_length
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.head_learning_rate = head_learning_rate
        self.warmup_ratio = warmup_ratio
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.patience = patience
        self.val_fraction = val_fraction
        self.metric = metric
        self.head_c = head_c
        self.normalize = normalize
        self.precision = precision
        self.top_k = top_k
        self.scope_alpha = scope_alpha
        self.seed = seed
        self.allow_pickle = allow_pickle

    # ------------------------------------------------------------------ parameters
    _PARAMS = (
        "base", "strategy", "max_length", "epochs", "learning_rate", "head_learning_rate",
        "warmup_ratio", "weight_decay", "batch_size", "dropout", "label_smoothing", "patience",
        "val_fraction",
        "metric", "head_c", "normalize", "precision", "top_k", "scope_alpha", "seed",
        "allow_pickle",
    )  # fmt: skip

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as passed to ``__init__``."""
        return {k: getattr(self, k) for k in self._PARAMS}

    def set_params(self, **params: Any) -> Self:
        """Change hyper-parameters (for example more epochs before :meth:`resume`)."""
        for key, value in params.items():
            if key not in self.get_params():
                raise ConfigError(
                    f"TextClassifier has no parameter {key!r}. Valid: {sorted(self.get_params())}"
                )
            setattr(self, key, value)
        return self

    def _check_params(self) -> None:
        check_params(self)

    # ------------------------------------------------------------------ encoding
    def _setup_base(self) -> None:
        self.source_: ModelSource = resolve(self.base, allow_pickle=self.allow_pickle)
        self.tokenizer_ = load_tokenizer(self.source_.path)
        encoder = load_encoder(self.source_)
        self.window_ = model_window(self.tokenizer_, encoder, self.max_length)
        self.net_ = ClassifierNet(encoder, 1, normalize=self.normalize, dropout=self.dropout)

    def _tokenize(self, texts: Sequence[str]) -> Tokenized:
        return tokenize(self.tokenizer_, texts, self.window_)

    def _forward_all(
        self, tok: Tokenized, *, what: Literal["embed", "logits"], desc: str | None = None
    ) -> NDArray[np.float32]:
        """Embeddings or logits for every text, in input order, without gradients."""
        return forward_all(
            self.net_, tok.input_ids, what=what, pad_id=self._pad_id(),
            batch_size=max(self.batch_size, 64), precision=self.precision, desc=desc,
        )  # fmt: skip

    def _pad_id(self) -> int:
        pad = self.tokenizer_.pad_token_id
        return int(pad) if pad is not None else 0

    # ------------------------------------------------------------------ fitting
    def fit(self, examples: Sequence[Example]) -> Self:
        """Train from scratch on ``examples`` (a validation split is held out)."""
        self._check_params()
        validate_examples(examples)
        torch.manual_seed(self.seed)
        self._setup_base()
        self.classes_: list[str] = sorted({ex.label for ex in examples})
        self.net_.head = nn.Linear(self.net_.head.in_features, len(self.classes_))
        self._train(list(examples), resumed=False)
        return self

    def resume(self, examples: Sequence[Example], *, allow_new_labels: bool = False) -> Self:
        """Continue training a fitted (or loaded) skill on more data.

        Labels not seen before are refused unless ``allow_new_labels=True``; then the
        head grows one row per new label. Pass the new examples together with a sample
        of the old ones if the model must not drift away from them.
        """
        self._require_fitted()
        self._check_params()
        validate_examples(examples)
        new = sorted({ex.label for ex in examples} - set(self.classes_))
        if new and not allow_new_labels:
            shown = ", ".join(repr(x) for x in new[:10])
            raise DataError(
                f"the data has labels the skill was not trained on: {shown}. Pass "
                "allow_new_labels=True (CLI: --allow-new-labels) to add them."
            )
        if new:
            self.net_.head = grow_head(self.net_.head, len(new))
            self.classes_ = [*self.classes_, *new]
        torch.manual_seed(self.seed)
        self._train(list(examples), resumed=True)
        return self

    def _train(self, examples: list[Example], *, resumed: bool) -> None:
        start = time.perf_counter()
        index = {c: i for i, c in enumerate(self.classes_)}
        train, val = stratified_split(
            examples, [ex.label for ex in examples], fraction=self.val_fraction, seed=self.seed
        )
        y_train = np.array([index[ex.label] for ex in train], dtype=np.int64)
        y_val = np.array([index[ex.label] for ex in val], dtype=np.int64)
        tok_train = self._tokenize([ex.text for ex in train])
        tok_val = self._tokenize([ex.text for ex in val])
        n_truncated = sum(1 for n in tok_train.lengths if n > self.window_)
        if n_truncated:
            warnings.warn(
                f"{n_truncated} training texts are longer than the {self.window_}-token window "
                "and were truncated; raise max_length if the end of the text matters.",
                stacklevel=3,
            )
        for param in self.net_.encoder.parameters():
            param.requires_grad = self.strategy == "finetune"
        x_train = None
        if self.strategy == "head" or not resumed:
            x_train = self._fit_probe(tok_train, y_train, warm=resumed)
        history: list[dict[str, float]] = []
        best_epoch = 0
        if self.strategy == "finetune":
            result = self._finetune(tok_train, y_train, tok_val, y_val, resumed=resumed)
            history, best_epoch = result.history, result.best_epoch
        for param in self.net_.encoder.parameters():
            param.requires_grad = False
        x_val = self._forward_all(tok_val, what="embed", desc="validate")
        val_logits = self._logits(x_val)
        if x_train is None or self.strategy == "finetune":  # the encoder has changed
            x_train = self._forward_all(tok_train, what="embed", desc="scope statistics")
        self._fit_scope(x_train, y_train, x_val, resumed=resumed)
        self.temperature_ = fit_temperature(val_logits, y_val)
        raw = softmax(val_logits)
        cal = softmax(val_logits, self.temperature_)
        pred = cal.argmax(axis=1)
        from sklearn.metrics import f1_score

        self.metrics_: dict[str, float] = {
            "val_accuracy": float((pred == y_val).mean()),
            "val_macro_f1": float(f1_score(y_val, pred, average="macro", zero_division=0)),
            "val_ece_before_calibration": expected_calibration_error(raw, y_val),
            "val_ece": expected_calibration_error(cal, y_val),
            "temperature": self.temperature_,
            "n_train": float(len(train)),
            "n_val": float(len(val)),
        }
        self.history_ = history
        self.best_epoch_ = best_epoch
        self.train_seconds_ = time.perf_counter() - start
        rows = [(ex.text, ex.label) for ex in examples]
        self.data_sha256_ = data_hash(rows)
        self.data_rows_ = len(rows)
        self.resumed_ = resumed

    def _fit_probe(
        self, tok: Tokenized, y: NDArray[np.int64], *, warm: bool
    ) -> NDArray[np.float32]:
        """Fit the head as multinomial logistic regression on frozen sentence vectors."""
        x = self._forward_all(tok, what="embed", desc="embed (frozen encoder)")
        fit_probe(self.net_.head, x, y, c=self.head_c, seed=self.seed, warm=warm)
        return x

    def _fit_scope(
        self,
        x_train: NDArray[np.float32],
        y_train: NDArray[np.int64],
        x_val: NDArray[np.float32],
        *,
        resumed: bool,
    ) -> None:
        """Fit (or, on resume, update) the out-of-scope model."""
        old: ScopeModel | None = getattr(self, "scope_", None) if resumed else None
        self.scope_: ScopeModel | None = fit_scope(
            old, x_train, y_train, x_val, self.classes_, same_encoder=self.strategy == "head"
        )

    def _logits(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        with torch.inference_mode():
            out: NDArray[np.float32] = self.net_.head(torch.from_numpy(x)).numpy()
        return out

    def _finetune(
        self,
        tok_train: Tokenized,
        y_train: NDArray[np.int64],
        tok_val: Tokenized,
        y_val: NDArray[np.int64],
        *,
        resumed: bool,
    ) -> LoopResult:
        def evaluate() -> float:
            pred = self._forward_all(tok_val, what="logits").argmax(axis=1)
            if self.metric == "macro_f1":
                from sklearn.metrics import f1_score

                return float(f1_score(y_val, pred, average="macro", zero_division=0))
            return float((pred == y_val).mean())

        cfg = LoopConfig(
            epochs=self.epochs,
            learning_rate=self.learning_rate,
            head_learning_rate=self.head_learning_rate,
            warmup_ratio=self.warmup_ratio,
            weight_decay=self.weight_decay,
            patience=self.patience,
            precision=self.precision,
        )
        return finetune(
            self.net_,
            tok_train.input_ids,
            y_train,
            evaluate=evaluate,
            cfg=cfg,
            batch_size=self.batch_size,
            pad_id=self._pad_id(),
            seed=self.seed,
            label_smoothing=self.label_smoothing,
            description="resume fine-tune" if resumed else "fine-tune",
        )

    # ------------------------------------------------------------------ predicting
    def _require_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise NotFittedError(
                "This TextClassifier is not fitted yet. Call fit(examples) or "
                "TextClassifier.load(folder) first."
            )

    def predict_proba(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """Calibrated class probabilities, one row per text, columns in ``classes_`` order."""
        self._require_fitted()
        check_texts(texts)
        logits = self._forward_all(self._tokenize(texts), what="logits")
        return softmax(logits, self.temperature_)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Label, calibrated confidence and top-k scores for each text."""
        self._require_fitted()
        check_texts(texts)
        if not texts:
            return []
        start = time.perf_counter()
        tok = self._tokenize(texts)
        x = self._forward_all(tok, what="embed")
        probs = softmax(self._logits(x), self.temperature_)
        in_scope = self.scope_.p_values(x) if self.scope_ is not None else None
        per_item_ms = (time.perf_counter() - start) * 1000 / len(texts)
        k = min(self.top_k, len(self.classes_))
        out = []
        for i, row in enumerate(probs):
            top = np.argsort(-row, kind="stable")[:k]
            warning = tok.truncation_warning(i)
            p = None if in_scope is None else float(in_scope[i])
            out.append(
                Prediction(
                    label=self.classes_[int(top[0])],
                    confidence=float(row[top[0]]),
                    scores=tuple(LabelScore(self.classes_[int(j)], float(row[j])) for j in top),
                    usage=Usage(input_tokens=len(tok.input_ids[i]), latency_ms=per_item_ms),
                    warnings=(warning,) if warning else (),
                    data={} if p is None else {"in_scope_p": round(p, 6)},
                    abstained="out_of_scope" if p is not None and p < self.scope_alpha else None,
                )
            )
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write weights (safetensors), config, labels and a model card to ``path``."""
        self._require_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        save_classifier(self, folder)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Rebuild a classifier saved with :meth:`save` (weights verified by sha256)."""
        folder = Path(path)
        config = read_verified_config(folder, _NAME, "TextClassifier")
        self = cls(**config["params"])
        restore_classifier(self, folder, config)
        return self
