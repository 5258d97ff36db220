"""Export a :class:`TextClassifier` to an :class:`OnnxTextClassifier` folder.

Steps, each on the labelled validation data the caller passes:

1. trace the skill into one fp32 graph (:mod:`.graph`) and copy its tokenizer;
2. **parity**: the fp32 graph against the torch skill, on the decisions the skill makes
   (label and out-of-scope flag) and the probabilities (refused if it disagrees: that is
   a broken export, never a precision trade-off);
3. with ``int8``: quantize with every recipe asked for (:mod:`.quantize`), and for each
   measure parity, validation accuracy and throughput; keep the **fastest recipe that
   passes the accuracy gate** (at most ``margin`` points lost). If none passes, nothing
   is written, unless ``force``;
4. write the chosen graph as a normal, hashed skill folder with every measurement in
   its config and model card.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.errors import DataError
from slmstack.export.candidates import (
    Candidate,
    ExportPlan,
    ExportResult,
    check_options,
    machine,
    run_export,
)
from slmstack.export.checks import FP32_PARITY, INT8_PARITY, gate, parity, source_precision
from slmstack.export.graph import export_graph
from slmstack.export.quantize import RECIPES, QuantRecipe, encoder_feeds
from slmstack.models.onnx_runtime import OnnxEncoder
from slmstack.skills.classifier import TextClassifier
from slmstack.skills.onnx_classifier import OnnxTextClassifier
from slmstack.training.calibration import softmax
from slmstack.types import Example


def export_classifier(
    skill: TextClassifier,
    out: Path,
    validation: Sequence[Example],
    *,
    int8: bool = False,
    recipes: Sequence[QuantRecipe] = RECIPES,
    margin: float = 0.5,
    force: bool = False,
) -> ExportResult:
    """Export ``skill`` to ``out`` after the parity check and the accuracy gate."""
    skill._require_fitted()
    check_options(validation, margin, int8, recipes)
    _refuse_unlearned(validation, skill.classes_)
    texts = [ex.text for ex in validation]
    reference = _fp32_reference(skill, texts)

    def measure(graph: Path, tokenizer: Path, precision: str,
                recipe: QuantRecipe | None) -> tuple[Candidate, Any]:  # fmt: skip
        cand, runner = _measure(skill, graph, tokenizer, precision, recipe, reference,
                                validation, margin)  # fmt: skip
        return cand, runner.predict_proba

    plan = ExportPlan(
        "skill", texts, lambda p: skill.tokenizer_.backend_tokenizer.save(str(p)),
        lambda p: export_graph(skill, p), measure,
        lambda graph, tok, chosen, cands, forced: _skill(skill, graph, tok, chosen, cands,
                                                         forced),
        lambda graph, tok: encoder_feeds(OnnxEncoder(
            graph, tok, window=skill.window_, sep_id=skill.tokenizer_.sep_token_id,
            pad_id=int(skill.tokenizer_.pad_token_id or 0)), texts),
    )  # fmt: skip
    return run_export(plan, out, int8=int8, recipes=recipes, margin=margin, force=force)


def _refuse_unlearned(validation: Sequence[Example], classes: Sequence[str]) -> None:
    """Refuse labels the skill never learned: wrong for both skills, they weaken the gate.

    Labels from another column or label set are wrong for the torch skill and the export
    alike, so the gate would compare 0 with 0 points and pass any quantization.
    """
    known = set(classes)
    unseen = Counter(ex.label for ex in validation if ex.label not in known)
    if unseen:
        shown = ", ".join(f"{label!r}" for label in sorted(unseen)[:10])
        raise DataError(
            f"{sum(unseen.values())} of {len(validation)} validation examples have labels "
            f"the skill never learned: {shown}. They score as errors for both skills, so "
            "the accuracy gate could not tell a lossy export; check the label_column "
            "(--label-column) and the labels' spelling, or leave those rows out"
        )


Reference = tuple[NDArray[np.float64], NDArray[np.bool_] | None]
"""Probabilities per text and class, and each text's out-of-scope flag (``None``: no scope)."""


def _fp32_reference(skill: TextClassifier, texts: Sequence[str]) -> Reference:
    """The torch skill's probabilities and out-of-scope flags in fp32, the graph's arithmetic.

    fp32 even for a bf16 skill; the flags are those :meth:`TextClassifier.predict` sets.
    """
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise DataError(
            f"validation text #{empty[0]} is empty ({len(empty)} empty in all); a skill "
            "abstains on those without the model, so they test nothing: leave them out"
        )
    precision = skill.precision
    skill.precision = "fp32"
    try:
        x = skill._forward_all(skill._tokenize(texts), what="embed")
    finally:
        skill.precision = precision
    probs = softmax(skill._logits(x), skill.temperature_)
    scope = skill.scope_
    return probs, None if scope is None else scope.p_values(x) < skill.scope_alpha


def _measure(
    skill: TextClassifier,
    graph: Path,
    tokenizer: Path,
    precision: str,
    recipe: QuantRecipe | None,
    reference: Reference,
    validation: Sequence[Example],
    margin: float,
) -> tuple[Candidate, OnnxTextClassifier]:
    """Parity and gate of one graph (its speed is measured later, beside the others)."""
    onnx_skill = _skill(skill, graph, tokenizer, None, [], False)
    texts = [ex.text for ex in validation]
    probs, p_values = onnx_skill.proba_and_p_values(texts)
    ref_probs, ref_flags = reference
    flags = None
    if ref_flags is not None and p_values is not None:  # the export keeps the scope model
        flags = (ref_flags, p_values < onnx_skill.scope_alpha)
    limits = FP32_PARITY if precision == "fp32" else INT8_PARITY
    candidate = Candidate(
        precision, recipe, parity(ref_probs, probs, limits, flags=flags),
        gate(ref_probs, probs, validation, skill.classes_, margin), 0.0,
        graph.stat().st_size / 1e6,
    )  # fmt: skip
    return candidate, onnx_skill


def _skill(
    skill: TextClassifier,
    graph: Path,
    tokenizer: Path,
    chosen: Candidate | None,
    candidates: list[Candidate],
    forced: bool,
) -> OnnxTextClassifier:
    source = skill.provenance_
    export: dict[str, Any] = {"format": "onnx", "source": {"skill": skill.skill_name,
                              "strategy": skill.strategy_, "base": source.base,
                              **source_precision(skill)}}  # fmt: skip
    if chosen is not None:
        export.update(
            precision=chosen.precision,
            recipe=None if chosen.recipe is None else chosen.recipe.describe(),
            parity=chosen.parity.to_json(), gate=chosen.gate.to_json(), forced=forced,
            candidates=[c.to_json() for c in candidates], machine=machine(),
        )  # fmt: skip
    metrics = dict(source.metrics)
    if chosen is not None:
        metrics["gate_exported_accuracy"] = chosen.gate.exported_accuracy
    scope = skill.scope_
    return OnnxTextClassifier.from_graph(
        graph, tokenizer, labels=skill.classes_, temperature=skill.temperature_,
        window=skill.window_, sep_id=skill.tokenizer_.sep_token_id,
        pad_id=int(skill.tokenizer_.pad_token_id or 0),
        scope_reference=None if scope is None else scope.reference.astype(np.float64),
        export=export, provenance=dataclasses.replace(source, metrics=metrics),
        top_k=skill.top_k, scope_alpha=skill.scope_alpha,
    )  # fmt: skip
