"""``OnnxTextClassifier``: a :class:`TextClassifier` exported to ONNX, run without torch.

Made by ``slmstack export DIR --format onnx [--int8]`` (:mod:`slmstack.export`), never
trained directly. The folder holds one graph (``encoder.onnx``: tokens in, calibrated-
ready logits and the out-of-scope typicality score out), the ``tokenizer.json`` and the
labels; it is a normal skill folder, every file hashed. Loading and predicting import
onnxruntime, ``tokenizers`` and numpy only, so a server of exported skills needs neither
torch nor transformers (``pip install 'slmstack[onnx]'``).

Predictions follow the torch skill's contract exactly: label, temperature-calibrated
confidence, top-k scores, an ``"out_of_scope"`` abstention when the conformal p-value
of the text is below ``scope_alpha``, and a warning for truncated texts.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from slmstack.artifacts import Provenance
from slmstack.errors import ArtifactError, DataError, SkillError
from slmstack.models.onnx_runtime import OnnxEncoder
from slmstack.skills._labels import saved_labels, write_labels
from slmstack.skills._ranked import ranked_predictions, token_facts
from slmstack.skills.base import Skill, Tensors
from slmstack.skills.kinds import LabelledTexts
from slmstack.skills.params import Check, Interval
from slmstack.training.calibration import softmax
from slmstack.types import Prediction

GRAPH = "encoder.onnx"
TOKENIZER = "tokenizer.json"


class OnnxTextClassifier(LabelledTexts, Skill):
    """An exported text classifier: onnxruntime + ``tokenizers``, no torch.

    Example:
        >>> skill = slmstack.load("runs/intent-int8")  # doctest: +SKIP
        >>> skill.predict(["where is my card?"])[0].label  # doctest: +SKIP
        'card_arrival'
    """

    skill_name = "slmstack.OnnxTextClassifier.v1"
    produces = frozenset({"label", "confidence", "scores"})
    fitted_attribute = "classes_"
    constraints: ClassVar[Mapping[str, Check]] = {
        "top_k": Interval(int, 1, None),
        "batch_size": Interval(int, 1, None),
        "scope_alpha": Interval(float, 0, 1, closed="left",
                                note="(0 turns out-of-scope flags off)"),
    }  # fmt: skip

    def __init__(self, *, top_k: int = 3, scope_alpha: float = 0.01, batch_size: int = 64):
        self.top_k = top_k
        self.scope_alpha = scope_alpha
        self.batch_size = batch_size  # texts per graph call; batches are sorted by length

    # ------------------------------------------------------------------ building
    @classmethod
    def from_graph(
        cls,
        graph: Path,
        tokenizer: Path,
        *,
        labels: Sequence[str],
        temperature: float,
        window: int,
        sep_id: int | None,
        pad_id: int,
        scope_reference: NDArray[np.float64] | None,
        export: Mapping[str, Any],
        provenance: Provenance,
        top_k: int = 3,
        scope_alpha: float = 0.01,
    ) -> Self:
        """A skill over an exported graph (used by the exporter, before it is saved)."""
        self = cls(top_k=top_k, scope_alpha=scope_alpha)
        self._setup(graph, tokenizer, window=window, sep_id=sep_id, pad_id=pad_id)
        self.classes_ = [str(x) for x in labels]
        self.temperature_ = float(temperature)
        self.scope_reference_ = scope_reference
        self.export_ = dict(export)
        self.provenance_ = provenance
        self._check_outputs()
        return self

    def _setup(self, graph: Path, tokenizer: Path, *, window: int,
               sep_id: int | None, pad_id: int) -> None:  # fmt: skip
        self.encoder_ = OnnxEncoder(graph, tokenizer, window=window, sep_id=sep_id, pad_id=pad_id)
        self.window_ = window
        self.sep_id_ = sep_id
        self.pad_id_ = pad_id

    def _check_outputs(self) -> None:
        outputs = set(self.encoder_.outputs)
        if "logits" not in outputs:
            raise ArtifactError(f"{self.encoder_.graph} has no 'logits' output; export it again")
        if (self.scope_reference_ is None) != ("scope_score" not in outputs):
            raise ArtifactError(
                f"{self.encoder_.graph}: the graph's scope output and the saved scope "
                "reference disagree; export the skill again"
            )

    def fit(self, examples: Sequence[Any]) -> Self:
        """Refused: an exported skill is inference-only."""
        raise SkillError(
            "an exported ONNX skill cannot be trained: train or resume the torch skill "
            "(slmstack train classify), then export it again (slmstack export)."
        )

    # ------------------------------------------------------------------ predicting
    def _outputs(self, texts: Sequence[str]) -> tuple[Any, dict[str, NDArray[Any]]]:
        tok = self.encoder_.tokenize(texts)
        return tok, self.encoder_.run(tok, batch_size=self.batch_size)

    def predict_proba(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """Calibrated class probabilities, one row per text, columns in ``classes_`` order."""
        self._require_fitted()
        if any(not t.strip() for t in texts):
            raise DataError("predict_proba() got an empty text; use predict(), which abstains")
        if not texts:  # no rows, one column per class
            return np.zeros((0, len(self.classes_)), dtype=np.float64)
        _, out = self._outputs(texts)
        return softmax(out["logits"], self.temperature_)

    def proba_and_p_values(
        self, texts: Sequence[str]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """Calibrated probabilities and in-scope p-values (``None`` without a scope model).

        What :meth:`predict` decides from, in one graph call (the exporter's parity check).
        """
        self._require_fitted()
        if not texts:  # no rows, one column per class
            none = np.zeros((0, len(self.classes_)), dtype=np.float64)
            return none, None if self.scope_reference_ is None else np.zeros(0)
        _, out = self._outputs(texts)
        probs = softmax(out["logits"], self.temperature_)
        if self.scope_reference_ is None:
            return probs, None
        return probs, self._p_values(out["scope_score"].astype(np.float64))

    def _p_values(self, scores: NDArray[np.float64]) -> NDArray[np.float64]:
        ref = self.scope_reference_
        assert ref is not None
        rank = np.searchsorted(ref, scores, side="right")
        p: NDArray[np.float64] = ((rank + 1.0) / (len(ref) + 1.0)).astype(np.float64)
        return p

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Label, calibrated confidence and top-k scores for each text."""
        start = time.perf_counter()
        tok, out = self._outputs(texts)
        probs = softmax(out["logits"], self.temperature_)
        in_scope = None
        if self.scope_reference_ is not None:
            in_scope = self._p_values(out["scope_score"].astype(np.float64))
        per_item_ms = (time.perf_counter() - start) * 1000 / len(texts)
        tokens, warnings = token_facts(tok)
        return ranked_predictions(
            probs, self.classes_, self.top_k, input_tokens=tokens, latency_ms=per_item_ms,
            warnings=warnings, in_scope=in_scope, scope_alpha=self.scope_alpha,
        )  # fmt: skip

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], Tensors]:
        tensors: Tensors = {}
        if self.scope_reference_ is not None:
            tensors["scope"] = {"reference": np.ascontiguousarray(self.scope_reference_)}
        config = {
            "labels": self.classes_,
            "temperature": self.temperature_,
            "window": self.window_,
            "sep_id": self.sep_id_,
            "pad_id": self.pad_id_,
            "export": self.export_,
        }
        return config, tensors

    def _write_extra(self, folder: Path) -> None:
        write_labels(folder, self.classes_)
        shutil.copyfile(self.encoder_.graph, folder / GRAPH)
        shutil.copyfile(self.encoder_.tokenizer_path, folder / TOKENIZER)

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        self.classes_ = saved_labels(folder, config)
        sep = config["sep_id"]
        sep_id = None if sep is None else int(sep)
        window, pad_id = int(config["window"]), int(config["pad_id"])
        self._setup(folder / GRAPH, folder / TOKENIZER, window=window, sep_id=sep_id, pad_id=pad_id)
        self.temperature_ = float(config["temperature"])
        scope = tensors.get("scope")
        self.scope_reference_ = None if scope is None else scope["reference"].astype(np.float64)
        self.export_ = dict(config["export"])
        self.metrics_ = dict(self.provenance_.metrics)
        self._check_outputs()

    def _card(self) -> dict[str, Any]:
        return {
            "Runtime": "onnxruntime + tokenizers (no torch)",
            "Precision": self.export_.get("precision", "?"),
            "Exported from": self.export_.get("source", {}),
            "Parity with the torch skill": self.export_.get("parity", {}),
            "Accuracy gate": self.export_.get("gate", {}),
            "Labels": ", ".join(self.classes_),
        }
