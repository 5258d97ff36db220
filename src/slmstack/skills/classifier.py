"""``TextClassifier``: one label per text (intent, sentiment, complaint or not, ...).

Strategies:

* ``head``: the encoder stays frozen; a multinomial logistic-regression head is fitted
  on its sentence vectors. Trains in seconds and keeps the base model shareable.
* ``finetune``: the whole encoder is trained with a low learning rate, warm-up, a
  validation split, early stopping and the best epoch kept. The head starts from the
  ``head`` solution (linear probing, then fine-tuning), which converges faster and
  forgets less of the pretrained features than a random head.
* ``fewshot``: few examples per label. SetFit's contrastive tuning of the encoder on pairs
  of examples, then the ``head`` probe on the tuned vectors (``_fewshot.py``).
* ``auto``: the strategy measured best (``strategy_``): ``head``, which won or tied at every
  size tried on BANKING77, 2 to 20 examples per intent (``bench/RESULTS.md``).

Either way the confidence is calibrated by temperature scaling on the validation split,
and a scope model (``_scope.py``) flags texts unlike the training data (they abstain,
``"out_of_scope"``, when their p-value is below ``scope_alpha``). ``head`` and ``fewshot``
then refit the head on all examples (at 5 per label, the held-out fifth); temperature,
scope and ``val_*`` metrics stay those of the train-only head. With ``name_examples=True``
every fit of that head also reads each label's name as an example (``_label_words.py``).
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from slmstack.artifacts import data_hash
from slmstack.data.splits import stratified_split
from slmstack.data.validation import drop_duplicates, refuse_unusable_rows, validate_examples
from slmstack.errors import ConfigError, DataError
from slmstack.models.encoder import Tokenized, load_encoder, model_window, tokenize
from slmstack.models.resolve import ModelSource, resolve
from slmstack.models.shared import private_copy, shared_encoder, shared_tokenizer
from slmstack.skills._classifier_io import (
    classifier_card,
    classifier_state,
    restore_classifier,
    write_classifier_files,
)
from slmstack.skills._classifier_training import (
    ClassifierNet,
    SoftTeacher,
    fit_probe,
    forward_all,
    grow_head,
    soft_targets,
    validation_metrics,
)
from slmstack.skills._classifier_tune import tune_encoder
from slmstack.skills._fewshot import Pairing
from slmstack.skills._label_words import name_rows, name_texts
from slmstack.skills._ranked import ranked_predictions, token_facts
from slmstack.skills._scope import ScopeModel, fit_scope, warn_small_scope
from slmstack.skills.base import Skill, Tensors
from slmstack.skills.kinds import LabelledTexts
from slmstack.skills.params import Check, Interval
from slmstack.training.calibration import fit_temperature, softmax
from slmstack.types import Example, Prediction

Strategy = Literal["head", "finetune", "fewshot", "auto"]
_POSITIVE = Interval(float, 0, None, closed="neither")
_FRACTION = Interval(float, 0, 1, closed="left")


class TextClassifier(LabelledTexts, Skill):
    """Single-label text classifier on a pretrained encoder.

    Example:
        >>> from slmstack import TextClassifier, Example
        >>> data = [Example("where is my card", "card"), Example("card not here", "card"),
        ...         Example("refund please", "refund"), Example("money back", "refund")]
        >>> clf = TextClassifier(strategy="head").fit(data)  # doctest: +SKIP
        >>> clf.predict(["my card never came"])[0].label  # doctest: +SKIP
        'card'
    """

    skill_name = "slmstack.TextClassifier.v1"
    produces = frozenset({"label", "confidence", "scores"})
    fitted_attribute = "classes_"
    constraints: ClassVar[Mapping[str, Check]] = {
        **dict.fromkeys(("epochs", "batch_size", "top_k", "max_length", "patience",
                         "pair_iterations"), Interval(int, 1, None)),
        **dict.fromkeys(("learning_rate", "head_learning_rate", "head_c", "pair_learning_rate"),
                        _POSITIVE),
        "val_fraction": Interval(float, 0, 1, closed="neither"),
        "warmup_ratio": _FRACTION, "label_smoothing": _FRACTION, "dropout": _FRACTION,
        "distill_weight": Interval(float, 0, 1), "distill_temperature": _POSITIVE,
        "scope_alpha": Interval(float, 0, 1, closed="left",
                                note="(0 turns out-of-scope flags off)"),
    }  # fmt: skip

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
        # fewshot (bench/fewshot.py): pairs in a batch or sampled, passes per epoch, the rate
        pairing: Pairing = "in_batch",
        pair_iterations: int = 2,
        pair_learning_rate: float = 1e-4,
        # fit(teacher=...): share of the teacher's soft labels in the loss, their temperature
        distill_weight: float = 0.5,
        distill_temperature: float = 2.0,
        val_fraction: float = 0.1,
        metric: Literal["accuracy", "macro_f1"] = "accuracy",
        head_c: float = 10.0,  # inverse L2 strength of the probe; 10 is best on BANKING77
        name_examples: bool = False,  # each label's name, as words, is one more example
        normalize: bool = True,  # all-MiniLM vectors are trained for cosine geometry
        # "auto": bf16 where the CPU computes it natively (2x faster), else fp32. Not the
        # default: bf16 results move with the batch's padding (about 1e-3 in confidence),
        # so Workflow.run_batch would no longer equal run() text by text.
        precision: Literal["auto", "fp32", "bf16"] = "fp32",
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
        self.pairing = pairing
        self.pair_iterations = pair_iterations
        self.pair_learning_rate = pair_learning_rate
        self.distill_weight = distill_weight
        self.distill_temperature = distill_temperature
        self.val_fraction = val_fraction
        self.metric = metric
        self.head_c = head_c
        self.name_examples = name_examples
        self.normalize = normalize
        self.precision = precision
        self.top_k = top_k
        self.scope_alpha = scope_alpha
        self.seed = seed
        self.allow_pickle = allow_pickle

    # ------------------------------------------------------------------ encoding
    def _setup_base(self) -> None:
        self.source_: ModelSource = resolve(self.base, allow_pickle=self.allow_pickle)
        self.tokenizer_ = shared_tokenizer(self.source_.path)
        # A head never changes the encoder, so it uses the process-wide frozen copy.
        frozen = self.strategy_ == "head"
        encoder = shared_encoder(self.source_) if frozen else load_encoder(self.source_)
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
        return int(self.tokenizer_.pad_token_id or 0)

    # ------------------------------------------------------------------ fitting
    def fit(self, examples: Sequence[Example], *, teacher: SoftTeacher | None = None) -> Self:
        """Train from scratch on ``examples`` (a validation split is held out).

        ``teacher`` (``finetune`` only): a fitted classifier over the same labels, usually a
        larger encoder; the encoder then learns from its soft labels together with the gold
        labels (``distill_weight``, ``distill_temperature``).
        """
        self._check_params()
        if teacher is not None and self.strategy != "finetune":
            raise ConfigError(
                f"a teacher's soft labels train the encoder, and strategy={self.strategy!r} "
                "does not; use strategy='finetune', or fit without a teacher."
            )
        self.strategy_: str = "head" if self.strategy == "auto" else self.strategy
        if self.name_examples and self.strategy_ == "finetune":  # names join the rows
            refuse_unusable_rows(examples)  # a clear error before the labels are read
            examples = [*examples, *name_rows(sorted({ex.label for ex in examples}))]
        examples, self.duplicates_dropped_ = drop_duplicates(examples)
        validate_examples(examples)
        torch.manual_seed(self.seed)
        self._setup_base()
        self.classes_: list[str] = sorted({ex.label for ex in examples})
        self.net_.head = nn.Linear(self.net_.head.in_features, len(self.classes_))
        self._train(list(examples), resumed=False, teacher=teacher)
        return self

    def resume(self, examples: Sequence[Example], *, allow_new_labels: bool = False) -> Self:
        """Continue training a fitted (or loaded) skill on more data.

        Labels not seen before are refused unless ``allow_new_labels=True``; then the
        head grows one row per new label. ``finetune`` trains on from the saved encoder;
        ``head`` refits its logistic-regression head on ``examples`` alone (the fit is
        convex, so it ends where a fresh fit would), keeping the rows of labels absent
        from them. So pass the old examples (or a sample of them) with the new ones.
        """
        self._require_fitted()
        self._check_params()
        if self.name_examples and self.strategy_ == "finetune":  # as in fit, for its labels
            refuse_unusable_rows(examples)
            examples = [*examples, *name_rows(sorted({e.label for e in examples}))]
        examples, self.duplicates_dropped_ = drop_duplicates(examples)
        validate_examples(examples)
        new = sorted({ex.label for ex in examples} - set(self.classes_))
        if new and not allow_new_labels:
            shown = ", ".join(repr(x) for x in new[:10])
            raise DataError(
                f"the data has labels the skill was not trained on: {shown}. Pass "
                "allow_new_labels=True (CLI: --allow-new-labels) to add them."
            )
        before = self.classes_, copy.deepcopy(self.net_.head)  # a failed resume changes neither
        if new:
            self.net_.head = grow_head(self.net_.head, len(new))
            self.classes_ = [*self.classes_, *new]
        torch.manual_seed(self.seed)
        try:
            self._train(list(examples), resumed=True, grown=bool(new))
        except BaseException:  # Ctrl-C too: the skill must not keep half-added labels
            self.classes_, self.net_.head = before
            raise
        return self

    def _train(
        self,
        examples: list[Example],
        *,
        resumed: bool,
        teacher: SoftTeacher | None = None,
        grown: bool = False,
    ) -> None:
        start = time.perf_counter()
        if self.name_examples:  # before any training: a name that reads as nothing is refused
            name_texts(self.classes_)
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
        warn_small_scope(len(val), self.scope_alpha)
        tuned = self.strategy_ != "head"
        if tuned:  # resuming a loaded skill: never train a shared base
            self.net_.encoder = private_copy(self.net_.encoder)
        for param in self.net_.encoder.parameters():
            param.requires_grad = tuned
        x_train = None
        # A fine-tune starts from the probe; on resume too when the head grew, or the new
        # labels' rows would start at zero and lose to every old label.
        if self.strategy_ == "head" or (self.strategy_ == "finetune" and (grown or not resumed)):
            x_train = self._fit_probe(tok_train, y_train, warm=resumed)
        soft = None if teacher is None else soft_targets(
            teacher, [ex.text for ex in train], self.classes_,
            weight=self.distill_weight, temperature=self.distill_temperature,
        )  # fmt: skip
        kept = getattr(self, "teacher_", None) if resumed else None  # the encoder still has it
        self.teacher_: dict[str, Any] | None = soft.describe(teacher) if soft else kept
        result = tune_encoder(
            self, tok_train, y_train, tok_val, y_val, resumed=resumed, soft=soft
        ) if tuned else None  # fmt: skip
        self.history_, self.best_epoch_ = (result.history, result.best_epoch) if result else ([], 0)
        for param in self.net_.encoder.parameters():
            param.requires_grad = False
        x_val = self._forward_all(tok_val, what="embed", desc="validate")
        if x_train is None or tuned:  # the encoder has changed
            x_train = self._forward_all(tok_train, what="embed", desc="scope statistics")
        if self.strategy_ == "fewshot":  # the head is fitted on the tuned vectors
            self._fit_head(x_train, y_train, warm=resumed)
        val_logits = self._logits(x_val)
        self._fit_scope(x_train, y_train, x_val, resumed=resumed)
        self.temperature_ = fit_temperature(val_logits, y_val)
        self.head_refit_: bool | None = self.strategy_ in ("head", "fewshot")
        if self.head_refit_:  # every example counts; T and scope stay the train-only head's
            x_all, y_all = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])
            self._fit_head(x_all, y_all, warm=resumed)
        self.metrics_: dict[str, float] = {
            **validation_metrics(val_logits, y_val, self.temperature_),
            "n_train": float(len(train)),
            "n_val": float(len(val)),
        }
        self.provenance_ = self._provenance(
            base=self.source_.describe(),
            data_sha256=data_hash([(ex.text, ex.label) for ex in examples]),
            rows=len(examples),
            duplicates_dropped=self.duplicates_dropped_,
            seconds=time.perf_counter() - start,
            metrics=self.metrics_,
            resumed=resumed,
        )

    def _fit_probe(
        self, tok: Tokenized, y: NDArray[np.int64], *, warm: bool
    ) -> NDArray[np.float32]:
        """Fit the head as multinomial logistic regression on frozen sentence vectors."""
        x = self._forward_all(tok, what="embed", desc="embed (frozen encoder)")
        self._fit_head(x, y, warm=warm)
        return x

    def _fit_head(self, x: NDArray[np.float32], y: NDArray[np.int64], *, warm: bool) -> None:
        """The probe on ``x``, plus each label's name as an example if ``name_examples``."""
        if self.name_examples:
            names = self._forward_all(self._tokenize(name_texts(self.classes_)), what="embed")
            x, y = np.concatenate([x, names]), np.concatenate([y, np.arange(len(names))])
        fit_probe(self.net_.head, x, y, c=self.head_c, seed=self.seed, warm=warm)

    def _fit_scope(
        self, x_train: NDArray[np.float32], y_train: NDArray[np.int64],
        x_val: NDArray[np.float32], *, resumed: bool,
    ) -> None:  # fmt: skip
        """Fit (or, on resume, update) the out-of-scope model."""
        old: ScopeModel | None = getattr(self, "scope_", None) if resumed else None
        self.scope_: ScopeModel | None = fit_scope(
            old, x_train, y_train, x_val, self.classes_, same_encoder=self.strategy_ == "head"
        )

    def _logits(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        with torch.inference_mode():
            out: NDArray[np.float32] = self.net_.head(torch.from_numpy(x)).numpy()
        return out

    # ------------------------------------------------------------------ predicting
    def predict_proba(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """Calibrated class probabilities, one row per text, columns in ``classes_`` order."""
        self._require_fitted()
        if any(not t.strip() for t in texts):
            raise DataError("predict_proba() got an empty text; use predict(), which abstains")
        if not texts:  # no rows, one column per class
            return np.zeros((0, len(self.classes_)), dtype=np.float64)
        logits = self._forward_all(self._tokenize(texts), what="logits")
        return softmax(logits, self.temperature_)

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Label, calibrated confidence and top-k scores for each text."""
        start = time.perf_counter()
        tok = self._tokenize(texts)
        x = self._forward_all(tok, what="embed")
        probs = softmax(self._logits(x), self.temperature_)
        in_scope = self.scope_.p_values(x) if self.scope_ is not None else None
        per_item_ms = (time.perf_counter() - start) * 1000 / len(texts)
        tokens, warnings = token_facts(tok)
        return ranked_predictions(
            probs, self.classes_, self.top_k, input_tokens=tokens, latency_ms=per_item_ms,
            warnings=warnings, in_scope=in_scope, scope_alpha=self.scope_alpha,
        )  # fmt: skip

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], Tensors]:
        return classifier_state(self)

    def _write_extra(self, folder: Path) -> None:
        write_classifier_files(self, folder)

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        restore_classifier(self, config, tensors, folder)

    def _card(self) -> dict[str, Any]:
        return classifier_card(self)
