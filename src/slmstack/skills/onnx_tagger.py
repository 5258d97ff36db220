"""``OnnxEntityTagger``: an :class:`EntityTagger` exported to ONNX, run without torch.

Made by ``slmstack export DIR --format onnx [--int8]`` (:mod:`slmstack.export`), never
trained directly. The folder holds one graph (``encoder.onnx``: sub-word ids, mask and
casing classes in; per-sub-word tag logits out, the encoder, casing embeddings and tag
head fused), the ``tokenizer.json`` and the tag set. Loading and predicting import
onnxruntime, ``tokenizers`` and numpy only.

Everything around the graph is the torch skill's own code (:mod:`slmstack.skills._tokens`):
the same words and casing from the same tokenizer, the same overlapping windows for long
inputs (each word takes its logits from the window where it has most context), the same
temperature and the same constrained Viterbi decoding into IOB2-valid character spans.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from slmstack.artifacts import Provenance
from slmstack.errors import ArtifactError, SkillError
from slmstack.models.onnx_runtime import load_fast_tokenizer, open_session
from slmstack.skills._tokens import (
    Encoded,
    decode_spans,
    encode,
    merge_windows,
    transition_mask,
    window_arrays,
    window_chunks,
)
from slmstack.skills.base import Skill, Tensors
from slmstack.skills.kinds import TaggedTexts
from slmstack.skills.params import Check, Interval
from slmstack.training.calibration import softmax
from slmstack.types import Prediction, Span, Usage

GRAPH = "encoder.onnx"
TOKENIZER = "tokenizer.json"
INPUTS = ("input_ids", "attention_mask", "case_ids")


class OnnxEntityTagger(TaggedTexts, Skill):
    """An exported entity tagger: onnxruntime + ``tokenizers``, no torch.

    Example:
        >>> tagger = slmstack.load("runs/ner-int8")  # doctest: +SKIP
        >>> spans = tagger.predict(["Anna flew to Rome"])[0].spans  # doctest: +SKIP
        >>> [(s.label, s.text) for s in spans]  # doctest: +SKIP
        [('PER', 'Anna'), ('LOC', 'Rome')]
    """

    skill_name = "slmstack.OnnxEntityTagger.v1"
    produces = frozenset({"spans"})
    fitted_attribute = "tags_"
    constraints: ClassVar[Mapping[str, Check]] = {"batch_size": Interval(int, 1, None)}

    def __init__(self, *, batch_size: int = 32):
        self.batch_size = batch_size  # windows per graph call; sorted by length

    # ------------------------------------------------------------------ building
    @classmethod
    def from_graph(
        cls,
        graph: Path,
        tokenizer: Path,
        *,
        tags: Sequence[str],
        temperature: float,
        window: int,
        stride: int,
        special: tuple[int, int, int],
        export: Mapping[str, Any],
        provenance: Provenance,
    ) -> Self:
        """A tagger over an exported graph (used by the exporter, before it is saved)."""
        self = cls()
        self._setup(graph, tokenizer)
        self.tags_ = [str(t) for t in tags]
        self.temperature_ = float(temperature)
        self.window_, self.stride_ = int(window), int(stride)
        self.special_ = special
        self.export_ = dict(export)
        self.provenance_ = provenance
        return self

    def _setup(self, graph: Path, tokenizer: Path) -> None:
        self.graph_ = graph
        self.tokenizer_path_ = tokenizer
        self.session_ = open_session(graph)
        self.tokenizer_ = load_fast_tokenizer(tokenizer)
        names = {i.name for i in self.session_.get_inputs()}
        outputs = [o.name for o in self.session_.get_outputs()]
        if names != set(INPUTS) or outputs != ["logits"]:
            raise ArtifactError(
                f"{graph} is not an exported tagger graph (inputs {sorted(names)}, outputs "
                f"{outputs}); export the tagger again with `slmstack export`"
            )

    def fit(self, examples: Sequence[Any]) -> Self:
        """Refused: an exported skill is inference-only."""
        raise SkillError(
            "an exported ONNX skill cannot be trained: train or resume the torch tagger "
            "(slmstack train tag), then export it again (slmstack export)."
        )

    # ------------------------------------------------------------------ predicting
    def word_probabilities(self, texts: Sequence[str]) -> list[NDArray[np.float64]]:
        """Calibrated tag probabilities of each word (rows) of each text."""
        self._require_fitted()
        encs = encode(self.tokenizer_, texts)
        return [softmax(lg, self.temperature_) for lg in self._word_logits(encs)]

    def _word_logits(self, encs: Sequence[Encoded]) -> list[NDArray[np.float32]]:
        """Logits of each word, merged over windows (the torch skill's order and batches)."""
        chunks = window_chunks(encs, self.window_, self.stride_)
        order = sorted(range(len(chunks)), key=lambda k: len(encs[chunks[k][0]].ids))
        window_logits: dict[tuple[int, int], NDArray[np.float32]] = {}
        for b in range(0, len(order), self.batch_size):
            sel = [chunks[k] for k in order[b : b + self.batch_size]]
            arrays = window_arrays(encs, sel, self.window_, self.special_)
            (logits,) = self.session_.run(["logits"], dict(zip(INPUTS, arrays, strict=True)))
            for row, key in enumerate(sel):
                window_logits[key] = logits[row, 1:]
        return merge_windows(encs, window_logits, self.window_, self.stride_, len(self.tags_))

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Entity spans with character offsets and a calibrated confidence, per text."""
        start = time.perf_counter()
        encs = encode(self.tokenizer_, texts)
        allowed = transition_mask(self.tags_)
        spans: list[list[Span]] = []
        for text, enc, lg in zip(texts, encs, self._word_logits(encs), strict=True):
            probs = softmax(lg, self.temperature_) if len(lg) else np.zeros((0, len(self.tags_)))
            spans.append(decode_spans(text, enc, probs, self.tags_, allowed))
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
        config = {"tags": self.tags_, "temperature": self.temperature_, "window": self.window_,
                  "stride": self.stride_, "special_ids": list(self.special_),
                  "export": self.export_}  # fmt: skip
        return config, {}

    def _write_extra(self, folder: Path) -> None:
        (folder / "tags.json").write_text(json.dumps(self.tags_, indent=1) + "\n", encoding="utf-8")
        shutil.copyfile(self.graph_, folder / GRAPH)
        shutil.copyfile(self.tokenizer_path_, folder / TOKENIZER)

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        tags = config["tags"]
        special = config["special_ids"]
        if not isinstance(tags, list) or not tags or not isinstance(special, list):
            raise ArtifactError(f"{folder}/config.json: 'tags' and 'special_ids' must be lists")
        self._setup(folder / GRAPH, folder / TOKENIZER)
        self.tags_ = [str(t) for t in tags]
        self.temperature_ = float(config["temperature"])
        self.window_, self.stride_ = int(config["window"]), int(config["stride"])
        cls_id, sep_id, pad_id = (int(x) for x in special)
        self.special_ = (cls_id, sep_id, pad_id)
        self.export_ = dict(config["export"])
        self.metrics_ = dict(self.provenance_.metrics)

    def _card(self) -> dict[str, Any]:
        return {
            "Runtime": "onnxruntime + tokenizers (no torch)",
            "Precision": self.export_.get("precision", "?"),
            "Exported from": self.export_.get("source", {}),
            "Parity with the torch skill": self.export_.get("parity", {}),
            "Accuracy gate": self.export_.get("gate", {}),
            "Entity types": ", ".join(sorted({t[2:] for t in self.tags_ if t != "O"})),
        }
