"""``EntityTagger``: named entities as character spans (people, places, products, ...).

Token classification on a pretrained encoder: every word (the tokenizer's pre-token)
is tagged IOB2 from its first sub-word. Three choices beyond the textbook recipe:

* the original casing of each word is given back, because the default MiniLM tokenizer
  lowercases and casing is the best cue for names: as a learned vector added to each
  sub-word's input embedding (``case_input``; zero at the start, so training starts from
  the pretrained encoder), so that every layer can use it in context, and as a feature
  beside the encoder's output vector (``case_dim``). On CoNLL-2003 the input casing is
  worth about 2 F1 points (``bench/RESULTS.md``);
* decoding is constrained Viterbi over the tag probabilities (no ``I-X`` without a
  ``B-X``), a CRF's main benefit without its training cost;
* long inputs are split into overlapping windows; each word takes its tags from the
  window where it has the most context on both sides, so nothing is cut off.

Confidence is calibrated by temperature scaling on the validation split.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from slmstack.artifacts import data_hash
from slmstack.data.tagging import TaggedExample, check_spans
from slmstack.data.validation import drop_duplicates
from slmstack.errors import ArtifactError, ConfigError, DataError, DataWarning
from slmstack.evaluation.metrics import tagger_metrics
from slmstack.models.bf16 import inference_module
from slmstack.models.encoder import autocast, load_encoder, model_window
from slmstack.models.resolve import ModelSource, resolve
from slmstack.models.shared import shared_encoder, shared_tokenizer
from slmstack.skills._token_net import TokenNet, make_batch, special_ids
from slmstack.skills._tokens import (
    IGNORE,
    Encoded,
    decode_spans,
    encode,
    merge_windows,
    sub_labels,
    transition_mask,
    window_chunks,
    word_tags,
)
from slmstack.skills.base import Skill, Tensors
from slmstack.skills.kinds import TaggedTexts
from slmstack.skills.params import Check, Interval
from slmstack.training.calibration import fit_temperature, softmax
from slmstack.training.loop import LoopConfig, train_loop
from slmstack.types import Prediction, Span, Usage

_POSITIVE = Interval(float, 0, None, closed="neither")


def _stride_check(value: Any) -> str | None:
    return None if isinstance(value, int) and value >= 0 else "an int >= 0"


class EntityTagger(TaggedTexts, Skill):
    """Fine-tuned token classifier that returns entity spans with character offsets.

    Example:
        >>> from slmstack import EntityTagger, TaggedExample
        >>> data = [TaggedExample.from_tokens(["Anna", "met", "Bob"], ["B-PER", "O", "B-PER"])]
        >>> tagger = EntityTagger(epochs=3).fit(data * 20)  # doctest: +SKIP
        >>> spans = tagger.predict(["Carl met Dana"])[0].spans  # doctest: +SKIP
        >>> [(s.label, s.text) for s in spans]  # doctest: +SKIP
        [('PER', 'Carl'), ('PER', 'Dana')]
    """

    skill_name = "slmstack.EntityTagger.v1"
    produces = frozenset({"spans"})
    fitted_attribute = "tags_"
    # Taggers saved before input casing existed had none.
    saved_defaults: ClassVar[Mapping[str, Any]] = {"case_input": False}
    constraints: ClassVar[Mapping[str, Check]] = {
        **dict.fromkeys(("epochs", "batch_size", "patience"), Interval(int, 1, None)),
        "max_length": Interval(int, 8, None),
        "stride": _stride_check,
        "case_dim": Interval(int, 0, None),
        **dict.fromkeys(("learning_rate", "head_learning_rate"), _POSITIVE),
        "val_fraction": Interval(float, 0, 1, closed="neither"),
    }

    def __init__(
        self,
        *,
        base: str = "minilm",
        max_length: int = 128,  # sub-words per window; longer inputs use several windows
        stride: int = 32,  # overlap between windows, so every word has context
        epochs: int = 4,
        learning_rate: float = 5e-5,
        head_learning_rate: float = 1e-3,  # the head and casing embedding start from zero
        warmup_ratio: float = 0.1,
        weight_decay: float = 0.01,
        batch_size: int = 16,
        dropout: float = 0.1,
        case_dim: int = 16,  # 0 turns the casing features off
        case_input: bool = True,  # casing also added to the encoder's input embeddings
        patience: int = 2,
        val_fraction: float = 0.1,
        precision: Literal["auto", "fp32", "bf16"] = "fp32",
        seed: int = 0,
        allow_pickle: bool = False,
    ):
        self.base = base
        self.max_length = max_length
        self.stride = stride
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.head_learning_rate = head_learning_rate
        self.warmup_ratio = warmup_ratio
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.dropout = dropout
        self.case_dim = case_dim
        self.case_input = case_input
        self.patience = patience
        self.val_fraction = val_fraction
        self.precision = precision
        self.seed = seed
        self.allow_pickle = allow_pickle

    def _check_params(self) -> None:
        super()._check_params()
        if self.stride >= self.max_length // 2:
            raise ConfigError(
                f"The 'stride' parameter of EntityTagger must be an int in [0, max_length/2) = "
                f"[0, {self.max_length // 2}). Got {self.stride!r} instead."
            )

    # ------------------------------------------------------------------ model plumbing
    def _build(
        self, source: ModelSource, encoder_dir: Path, n_tags: int, *, frozen: bool = False
    ) -> None:
        self.source_ = source
        self.tokenizer_ = shared_tokenizer(encoder_dir)
        # fit() trains its own copy; a loaded tagger shares its weights with equal ones.
        encoder = shared_encoder(source) if frozen else load_encoder(source)
        # Two positions go to [CLS] and [SEP].
        self.window_ = model_window(self.tokenizer_, encoder, self.max_length) - 2
        self.net_ = TokenNet(encoder, n_tags, case_dim=self.case_dim, dropout=self.dropout,
                             case_input=self.case_input)  # fmt: skip

    def _chunks(self, encs: Sequence[Encoded]) -> list[tuple[int, int]]:
        """(example index, window start) of every window of every text."""
        return window_chunks(encs, self.window_, self.stride)

    def _batch(
        self, encs: Sequence[Encoded], chunks: Sequence[tuple[int, int]],
        labels: Sequence[Sequence[int]] | None = None,
    ) -> tuple[torch.Tensor, ...]:  # fmt: skip
        special = special_ids(self.tokenizer_, self.base)
        return make_batch(encs, chunks, self.window_, special, labels)

    def _word_logits(self, encs: Sequence[Encoded]) -> list[NDArray[np.float32]]:
        """Logits of each word (first sub-word), merged over overlapping windows."""
        chunks = self._chunks(encs)
        window_logits: dict[tuple[int, int], NDArray[np.float32]] = {}
        order = sorted(range(len(chunks)), key=lambda k: len(encs[chunks[k][0]].ids))
        batch = max(self.batch_size, 32)
        self.net_.eval()
        net = inference_module(self.net_, self.precision)
        with torch.inference_mode():
            for b in range(0, len(order), batch):
                sel = [chunks[k] for k in order[b : b + batch]]
                ids, mask, case, _ = self._batch(encs, sel)
                with autocast(self.precision):
                    logits = net(ids, mask, case).float().numpy()
                for row, key in enumerate(sel):
                    window_logits[key] = logits[row, 1:]
        return merge_windows(encs, window_logits, self.window_, self.stride, len(self.tags_))

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        examples: Sequence[TaggedExample],
        *,
        validation: Sequence[TaggedExample] | None = None,
    ) -> Self:
        """Fine-tune on ``examples``; ``validation`` defaults to a held-out fraction."""
        self._check_params()
        if not examples:
            raise DataError("no training examples; pass at least a few tagged texts")
        if validation is not None and not validation:
            raise DataError("validation is empty; pass None to hold out val_fraction instead")
        check_spans(examples)
        check_spans(validation or (), "validation")
        examples, dropped = drop_duplicates(examples)
        labels = sorted({s.label for ex in examples for s in ex.spans})
        if not labels:
            raise DataError(
                f"none of the {len(examples)} training examples has an entity span; the "
                "tagger has nothing to learn. Check the tag column or the spans key."
            )
        if validation is None and len(examples) < 2:
            raise DataError(
                f"the tagger needs at least 2 annotated examples (some are held out to pick the "
                f"epoch and calibrate); got {len(examples)}. Add examples, or pass validation "
                "examples (CLI: --validation FILE)"
            )
        torch.manual_seed(self.seed)
        start = time.perf_counter()
        self.tags_: list[str] = ["O", *(f"{p}-{lab}" for lab in labels for p in ("B", "I"))]
        source = resolve(self.base, allow_pickle=self.allow_pickle)
        self._build(source, source.path, len(self.tags_), frozen=False)
        train, val = list(examples), list(validation or [])
        if validation is None:
            order = np.random.default_rng(self.seed).permutation(len(train))
            # at least one example each side: never validate on the training examples
            n_val = min(len(train) - 1, max(1, round(self.val_fraction * len(train))))
            val = [train[i] for i in order[:n_val]]
            train = [train[i] for i in sorted(order[n_val:])]
        foreign = sorted({s.label for ex in val for s in ex.spans} - set(labels))
        if foreign:
            warnings.warn(
                f"validation holds entity types training has none of ({', '.join(foreign)}); "
                "the tagger cannot learn them and they count as misses in every epoch's "
                "score. Add training examples of them, or drop them from validation",
                DataWarning,
                stacklevel=2,
            )
        unseen = sorted(set(labels) - {s.label for ex in train for s in ex.spans})
        if unseen:  # every example of these types went to the validation split
            warnings.warn(
                f"entity types {unseen} have no example left for training after the "
                "validation split, so the tagger cannot learn them; add examples of them",
                DataWarning,
                stacklevel=2,
            )
        enc_train = encode(self.tokenizer_, [ex.text for ex in train])
        enc_val = encode(self.tokenizer_, [ex.text for ex in val])
        y_train, odd = sub_labels(enc_train, train, self.tags_)
        self.misaligned_ = len(odd)
        if odd:
            warnings.warn(
                f"{len(odd)} entity spans do not start or end on a token boundary of "
                f"{self.base!r} and were widened to whole tokens (the first in {odd[0]}); "
                "check the offsets",
                DataWarning,
                stacklevel=2,
            )
        history, best = self._finetune(enc_train, y_train, enc_val, val)
        # Calibrate: one temperature over the word logits of the validation split.
        index = {t: i for i, t in enumerate(self.tags_)}
        logits = self._word_logits(enc_val)
        gold = [word_tags(e, ex.spans)[0] for e, ex in zip(enc_val, val, strict=True)]
        flat_y = np.array([index.get(t, 0) for g in gold for t in g], dtype=np.int64)
        if len(flat_y):
            self.temperature_ = fit_temperature(np.concatenate(logits), flat_y)
        self.metrics_: dict[str, Any] = {
            **tagger_metrics(val, self._decode([ex.text for ex in val], enc_val, logits)),
            "temperature": self.temperature_,
            "n_train": float(len(train)),
            "n_val": float(len(val)),
            "misaligned_spans": float(self.misaligned_),
        }
        self.history_, self.best_epoch_ = history, best
        rows = [(ex.text, *(f"{s.label}:{s.start}:{s.end}" for s in ex.spans)) for ex in examples]
        self.provenance_ = self._provenance(
            base=source.describe(), data_sha256=data_hash(rows), rows=len(rows),
            duplicates_dropped=dropped, seconds=time.perf_counter() - start, metrics=self.metrics_,
        )  # fmt: skip
        return self

    def _finetune(
        self,
        enc_train: list[Encoded],
        y_train: list[list[int]],
        enc_val: list[Encoded],
        val: list[TaggedExample],
    ) -> tuple[list[dict[str, float]], int]:
        chunks = self._chunks(enc_train)
        size = self.batch_size
        val_texts = [ex.text for ex in val]
        self.temperature_ = 1.0

        def make_batches(epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
            # Shuffle, then sort within pools of 20 batches: less padding, still random.
            rng = np.random.default_rng(self.seed + epoch)
            order = rng.permutation(len(chunks))
            pool = size * 20
            batches: list[list[tuple[int, int]]] = []
            for p in range(0, len(order), pool):
                part = sorted(order[p : p + pool], key=lambda k: len(enc_train[chunks[k][0]].ids))
                batches += [
                    [chunks[k] for k in part[b : b + size]] for b in range(0, len(part), size)
                ]
            for k in rng.permutation(len(batches)):
                yield self._batch(enc_train, batches[k], y_train)

        def loss_fn(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            ids, mask, case, y = batch
            logits = self.net_(ids, mask, case)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                   ignore_index=IGNORE)  # fmt: skip

        def evaluate() -> float:
            spans = self._decode(val_texts, enc_val, self._word_logits(enc_val))
            return float(tagger_metrics(val, spans)["f1"])

        cfg = LoopConfig.of(self)
        result = train_loop(
            self.net_,
            make_batches=make_batches,
            steps_per_epoch=(len(chunks) + size - 1) // size,
            loss_fn=loss_fn,
            evaluate=evaluate,
            cfg=cfg,
            head_prefixes=("head", "case_emb", "case_in"),
            description="fine-tune tagger",
        )
        return result.history, result.best_epoch

    # ------------------------------------------------------------------ predicting
    def _decode(
        self,
        texts: Sequence[str],
        encs: Sequence[Encoded],
        logits: Sequence[NDArray[np.float32]],
    ) -> list[list[Span]]:
        allowed = transition_mask(self.tags_)
        out = []
        for text, enc, lg in zip(texts, encs, logits, strict=True):
            probs = softmax(lg, self.temperature_) if len(lg) else np.zeros((0, len(self.tags_)))
            out.append(decode_spans(text, enc, probs, self.tags_, allowed))
        return out

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Entity spans with character offsets and a calibrated confidence, per text.

        A text's ``confidence`` is that of its least certain span (1.0 without spans).
        """
        start = time.perf_counter()
        encs = encode(self.tokenizer_, texts)
        spans = self._decode(texts, encs, self._word_logits(encs))
        per_item_ms = (time.perf_counter() - start) * 1000 / len(texts)
        return [
            Prediction(
                confidence=min((s.confidence for s in sp), default=1.0),
                spans=tuple(sp),
                usage=Usage(input_tokens=len(e.ids), latency_ms=per_item_ms),
            )
            for sp, e in zip(spans, encs, strict=True)
        ]

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], Tensors]:
        # The tag head and casing embeddings; the fine-tuned encoder goes to encoder/.
        head = {k: v for k, v in self.net_.state_dict().items() if not k.startswith("encoder.")}
        config = {"tags": self.tags_, "temperature": self.temperature_, "window": self.window_,
                  "history": self.history_, "best_epoch": self.best_epoch_,
                  "misaligned_spans": self.misaligned_}  # fmt: skip
        return config, {"head": head}

    def _write_extra(self, folder: Path) -> None:
        encoder: Any = self.net_.encoder
        encoder.save_pretrained(str(folder / "encoder"), safe_serialization=True)
        self.tokenizer_.save_pretrained(str(folder / "encoder"))

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        source = resolve(str(folder / "encoder")).with_provenance(self.provenance_.base)
        self.tags_ = [str(t) for t in config["tags"]]
        self._build(source, folder / "encoder", len(self.tags_), frozen=True)
        missing, unexpected = self.net_.load_state_dict(tensors["head"], strict=False)
        if unexpected or any(not k.startswith("encoder.") for k in missing):
            raise ArtifactError(
                f"{folder}/head.safetensors does not fit this tagger (missing "
                f"{[k for k in missing if not k.startswith('encoder.')]}, unexpected "
                f"{unexpected}); re-save the skill"
            )
        self.net_.eval()
        self.temperature_ = float(config["temperature"])
        self.metrics_ = dict(self.provenance_.metrics)
        self.history_, self.best_epoch_ = list(config["history"]), int(config["best_epoch"])
        self.misaligned_ = int(config["misaligned_spans"])

    def _card(self) -> dict[str, Any]:
        return {"Entity types": ", ".join(sorted({t[2:] for t in self.tags_ if t != "O"})),
                "Best epoch": self.best_epoch_}  # fmt: skip
