"""Export an :class:`EntityTagger` to an :class:`OnnxEntityTagger` folder.

The same steps as the classifier's export (:mod:`slmstack.export.classifier`), on tagged
validation texts:

1. trace the tagger (encoder with its casing input, casing features, tag head) into one
   fp32 graph with per-sub-word logits, and copy its tokenizer;
2. **parity** on words: the share of words whose most probable tag is the same as the
   torch skill's, and the largest difference of any tag probability (fp32 must agree
   almost exactly, or the export is refused as a bug);
3. with ``int8``: every recipe, each scored by entity micro-F1 on the validation texts;
   the fastest that loses at most ``margin`` F1 points is written (none: nothing is
   written, unless ``force``);
4. a normal hashed skill folder, every measurement in its config and model card.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.data.tagging import TaggedExample
from slmstack.errors import DataError
from slmstack.evaluation.metrics import tagger_metrics
from slmstack.export.candidates import (
    Candidate,
    ExportPlan,
    ExportResult,
    check_options,
    machine,
    run_export,
)
from slmstack.export.checks import FP32_PARITY, INT8_PARITY, GateReport, parity, source_precision
from slmstack.export.graph import export_tagger_graph
from slmstack.export.quantize import (
    CALIBRATION_BATCH,
    CALIBRATION_TEXTS,
    RECIPES,
    Feed,
    QuantRecipe,
)
from slmstack.skills._token_net import special_ids
from slmstack.skills._tokens import encode, window_arrays, window_chunks
from slmstack.skills.onnx_tagger import INPUTS, OnnxEntityTagger
from slmstack.skills.tagger import EntityTagger
from slmstack.training.calibration import softmax


def export_tagger(
    skill: EntityTagger,
    out: Path,
    validation: Sequence[TaggedExample],
    *,
    int8: bool = False,
    recipes: Sequence[QuantRecipe] = RECIPES,
    margin: float = 0.5,
    force: bool = False,
) -> ExportResult:
    """Export ``skill`` to ``out`` after the parity check and the F1 gate."""
    skill._require_fitted()
    check_options(validation, margin, int8, recipes)
    _refuse_unlearned(validation, skill.tags_)
    texts = [ex.text for ex in validation]
    reference, reference_f1 = _reference(skill, texts), _f1(skill, validation)

    def measure(graph: Path, tokenizer: Path, precision: str,
                recipe: QuantRecipe | None) -> tuple[Candidate, Any]:  # fmt: skip
        cand, runner = _measure(skill, graph, tokenizer, precision, recipe, reference,
                                reference_f1, validation, margin)  # fmt: skip
        return cand, runner.predict

    plan = ExportPlan(
        "tagger", texts, lambda p: skill.tokenizer_.backend_tokenizer.save(str(p)),
        lambda p: export_tagger_graph(skill, p), measure,
        lambda graph, tok, chosen, cands, forced: _skill(skill, graph, tok, chosen, cands,
                                                         forced),
        lambda graph, tok: _feeds(skill, texts),
    )  # fmt: skip
    return run_export(plan, out, int8=int8, recipes=recipes, margin=margin, force=force)


def _refuse_unlearned(validation: Sequence[TaggedExample], tags: Sequence[str]) -> None:
    """Refuse entities of types the tagger never learned, and a validation with none.

    Such entities (another scheme's names) are missed by the torch tagger and the export
    alike, so the F1 gate would compare 0 with 0 points and pass any quantization.
    """
    known = {tag.split("-", 1)[1] for tag in tags if "-" in tag}
    types = Counter(span.label for ex in validation for span in ex.spans)
    unseen = sorted(set(types) - known)
    if unseen:
        shown = ", ".join(f"{label!r}" for label in unseen[:10])
        raise DataError(
            f"{sum(types[t] for t in unseen)} validation entities are of types the tagger "
            f"never learned: {shown} (it knows {', '.join(sorted(known))}). Both taggers "
            "miss them, so the F1 gate could not tell a lossy export; check the tag names "
            "of the validation file"
        )
    if not types:
        raise DataError(
            "the validation data holds no entity, so the F1 gate could not tell a lossy "
            "export; pass tagged texts (CoNLL or span JSONL) with entities"
        )


def _feeds(skill: EntityTagger, texts: Sequence[str]) -> list[Feed]:
    """Static-int8 calibration feeds: windows of sample texts, as the exported tagger feeds them."""
    encs = encode(skill.tokenizer_, list(texts[:CALIBRATION_TEXTS]))
    chunks = window_chunks(encs, skill.window_, skill.stride)
    special = special_ids(skill.tokenizer_, skill.base)
    return [dict(zip(INPUTS, window_arrays(encs, chunks[b : b + CALIBRATION_BATCH], skill.window_,
                                           special), strict=True))
            for b in range(0, len(chunks), CALIBRATION_BATCH)]  # fmt: skip


def _reference(skill: EntityTagger, texts: Sequence[str]) -> NDArray[np.float64]:
    """The torch tagger's calibrated tag probabilities of every word, in fp32."""
    precision = skill.precision
    skill.precision = "fp32"
    try:
        logits = skill._word_logits(encode(skill.tokenizer_, texts))
    finally:
        skill.precision = precision
    return _stack([softmax(lg, skill.temperature_) for lg in logits], len(skill.tags_))


def _stack(rows: Sequence[NDArray[np.float64]], n_tags: int) -> NDArray[np.float64]:
    return np.concatenate(rows) if rows else np.zeros((0, n_tags))


def _f1(tagger: Any, data: Sequence[TaggedExample]) -> float:
    """Entity micro-F1 in points of ``tagger`` on ``data``."""
    predicted = [p.spans for p in tagger.predict([ex.text for ex in data])]
    return 100.0 * float(tagger_metrics(data, predicted)["f1"])


def _measure(
    skill: EntityTagger,
    graph: Path,
    tokenizer: Path,
    precision: str,
    recipe: QuantRecipe | None,
    reference: NDArray[np.float64],
    reference_f1: float,
    validation: Sequence[TaggedExample],
    margin: float,
) -> tuple[Candidate, OnnxEntityTagger]:
    """Parity and gate of one graph (its speed is measured later, beside the others)."""
    onnx_skill = _skill(skill, graph, tokenizer, None, [], False)
    texts = [ex.text for ex in validation]
    probs = _stack(onnx_skill.word_probabilities(texts), len(skill.tags_))
    limits = FP32_PARITY if precision == "fp32" else INT8_PARITY
    report = GateReport(len(validation), reference_f1, _f1(onnx_skill, validation), margin,
                        metric="entity F1")  # fmt: skip
    candidate = Candidate(precision, recipe, parity(reference, probs, limits), report, 0.0,
                          graph.stat().st_size / 1e6)  # fmt: skip
    return candidate, onnx_skill


def _skill(
    skill: EntityTagger,
    graph: Path,
    tokenizer: Path,
    chosen: Candidate | None,
    candidates: list[Candidate],
    forced: bool,
) -> OnnxEntityTagger:
    source = skill.provenance_
    export: dict[str, Any] = {"format": "onnx", "source": {"skill": skill.skill_name,
                              "base": source.base, **source_precision(skill)}}  # fmt: skip
    metrics = dict(source.metrics)
    if chosen is not None:
        export.update(
            precision=chosen.precision,
            recipe=None if chosen.recipe is None else chosen.recipe.describe(),
            parity=chosen.parity.to_json(), gate=chosen.gate.to_json(), forced=forced,
            candidates=[c.to_json() for c in candidates], machine=machine(),
        )  # fmt: skip
        metrics["gate_exported_f1"] = chosen.gate.exported_accuracy
    return OnnxEntityTagger.from_graph(
        graph, tokenizer, tags=skill.tags_, temperature=skill.temperature_,
        window=skill.window_, stride=skill.stride,
        special=special_ids(skill.tokenizer_, skill.base), export=export,
        provenance=dataclasses.replace(source, metrics=metrics),
    )  # fmt: skip
