"""Export a :class:`FAQAnswerer`'s encoder to ONNX: the same skill, answering without torch.

The FAQ skill's own state (knowledge base, calibration, threshold) does not depend on
the runtime, so the export is the same skill kind with its sentence encoder replaced by
an :class:`~slmstack.retrieval.onnx_encoder.OnnxSentenceEncoder` (``encoder.onnx`` and
``tokenizer.json`` in the folder): it loads, answers, and takes KB updates (``add``,
``replace``, ``remove``) with onnxruntime and ``tokenizers`` only. The steps are those of
every export (:func:`~slmstack.export.candidates.run_export`), on labelled queries (an
entry id, or empty / ``oos`` for a query the skill should decline):

1. trace the encoder, mean pooling and L2 normalisation into one fp32 graph (its output
   ``embedding`` is the unit vector the index compares) and copy the tokenizer; the KB
   questions are embedded again with each candidate graph, so questions and queries
   always come from the same arithmetic;
2. **parity**: the share of queries given the same outcome (the same entry, or both
   declined) and the largest difference of any entry's calibrated probability, against
   the torch skill (fp32 must agree almost exactly, or the export is refused as a bug);
3. **gate**: answer accuracy on the queries (the right entry in scope, a decline out of
   scope); with ``int8`` the fastest recipe that loses at most ``margin`` points is kept;
4. a normal hashed skill folder with every measurement in its config and model card.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

from slmstack.data.readers import read_examples
from slmstack.errors import DataError, SkillError
from slmstack.evaluation.retrieval import OUT_OF_SCOPE
from slmstack.export.candidates import (
    Candidate,
    ExportPlan,
    ExportResult,
    check_options,
    machine,
    run_export,
)
from slmstack.export.checks import (
    FP32_PARITY,
    INT8_PARITY,
    GateReport,
    ParityLimits,
    ParityReport,
    source_precision,
)
from slmstack.export.graph import export_encoder_graph
from slmstack.export.quantize import RECIPES, QuantRecipe, encoder_feeds
from slmstack.models.encoder import mean_pool
from slmstack.retrieval.calibration import top_two
from slmstack.retrieval.onnx_encoder import OUTPUT, OnnxSentenceEncoder
from slmstack.skills.faq import FAQAnswerer

Query = tuple[str, str | None]
"""A validation query and the id of the entry that answers it (``None``: decline)."""


def read_faq_queries(
    path: Path, *, text_column: str = "text", label_column: str = "label"
) -> list[Query]:
    """Labelled queries from CSV/TSV/JSONL: an entry id, or empty / ``oos`` to decline."""
    examples = read_examples(path, text_column=text_column, label_column=label_column,
                             validate=False)  # fmt: skip
    if not examples:
        raise DataError(f"{path} holds no queries; the FAQ export needs labelled queries")
    return [(ex.text, None if ex.label.strip() in OUT_OF_SCOPE else ex.label.strip())
            for ex in examples]  # fmt: skip


def export_faq(
    skill: FAQAnswerer,
    out: Path,
    validation: Sequence[Query],
    *,
    int8: bool = False,
    recipes: Sequence[QuantRecipe] = RECIPES,
    margin: float = 0.5,
    force: bool = False,
) -> ExportResult:
    """Export ``skill``'s encoder to ``out`` after the parity check and the answer gate."""
    skill._require_fitted()
    check_options(validation, margin, int8, recipes)
    unknown = sorted({g for _, g in validation if g is not None} - set(skill.entries_))
    if unknown:
        raise DataError(
            f"validation queries name entries the KB does not hold: {unknown[:5]}; label "
            "each query with an entry id, or leave the label empty (or 'oos') to decline"
        )
    texts = [q for q, _ in validation]
    encoder: Any = skill.encoder_
    if isinstance(encoder, OnnxSentenceEncoder):
        raise SkillError("this FAQ skill is already exported; export the torch skill it came from")
    precision = encoder.precision
    encoder.precision = "fp32"  # the graph's arithmetic, even for a bf16 skill
    try:
        reference = answer_outcomes(skill, texts)
    finally:
        encoder.precision = precision

    def measure(graph: Path, tokenizer: Path, precision: str,
                recipe: QuantRecipe | None) -> tuple[Candidate, Any]:  # fmt: skip
        exported = _skill(skill, graph, tokenizer, {})
        limits = FP32_PARITY if precision == "fp32" else INT8_PARITY
        mine = answer_outcomes(exported, texts, keys=reference[0])
        cand = Candidate(precision, recipe, answer_parity(reference, mine, limits),
                         answer_gate(reference[1], mine[1], validation, margin), 0.0,
                         graph.stat().st_size / 1e6)  # fmt: skip
        return cand, exported.predict

    def build(graph: Path, tokenizer: Path, chosen: Candidate, cands: list[Candidate],
              forced: bool) -> FAQAnswerer:  # fmt: skip
        export = {
            "format": "onnx",
            "source": {"skill": skill.skill_name, "base": skill.base, **source_precision(skill)},
            "precision": chosen.precision,
            "recipe": None if chosen.recipe is None else chosen.recipe.describe(),
            "parity": chosen.parity.to_json(), "gate": chosen.gate.to_json(), "forced": forced,
            "candidates": [c.to_json() for c in cands], "machine": machine(),
        }  # fmt: skip
        return _skill(skill, graph, tokenizer, export)

    plan = ExportPlan(
        "FAQ encoder", texts, lambda p: encoder.tokenizer.backend_tokenizer.save(str(p)),
        lambda p: export_encoder_graph(encoder.model, _SentenceNet(encoder.model).eval(), p,
                                       outputs=[OUTPUT]),
        measure, build,
        lambda graph, tok: encoder_feeds(_encoder(skill, graph, tok).runtime, texts),
    )  # fmt: skip
    return run_export(plan, out, int8=int8, recipes=recipes, margin=margin, force=force)


class _SentenceNet(nn.Module):
    """The torch encoder's ``forward`` as one module: (ids, mask) → unit vectors."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled, L2-normalised sentence vectors (``SentenceEncoder.forward``)."""
        model: Any = self.model
        hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return F.normalize(mean_pool(hidden, attention_mask).float(), dim=-1)


def _encoder(skill: FAQAnswerer, graph: Path, tokenizer: Path) -> OnnxSentenceEncoder:
    """The graph as a sentence encoder with the torch encoder's window and special ids."""
    torch_encoder: Any = skill.encoder_
    return OnnxSentenceEncoder(
        graph, tokenizer, dim=torch_encoder.dim, window=torch_encoder.window,
        sep_id=torch_encoder.tokenizer.sep_token_id, pad_id=torch_encoder.pad_id,
        batch_size=skill.batch_size,
    )  # fmt: skip


def _skill(skill: FAQAnswerer, graph: Path, tokenizer: Path, export: dict[str, Any]) -> FAQAnswerer:
    """``skill`` answering with the graph (its KB embedded again by the graph)."""
    return skill.exported(_encoder(skill, graph, tokenizer), export)


Outcomes = tuple[list[str], list[str | None], NDArray[np.float64]]
"""Entry ids (columns), each query's answer (``None``: declined), per-entry probabilities."""


def answer_outcomes(
    skill: FAQAnswerer, texts: Sequence[str], keys: Sequence[str] | None = None
) -> Outcomes:
    """What ``skill`` answers to ``texts``, and every entry's calibrated probability.

    The probability of entry ``k`` is the skill's own confidence formula applied as if
    ``k`` were the top match: its similarity and its margin over the best other entry.
    Columns follow ``keys`` (the reference's order) when given.
    """
    answers = [p.label if p.abstained is None else None for p in skill.predict(texts)]
    sims = skill.index_.key_scores(skill.encoder_.encode(texts).vectors)
    _, first, margin = top_two(sims)
    other = np.where(sims >= first[:, None], (first - margin)[:, None], first[:, None])
    probs = skill.calibrator_(sims, (sims - other).astype(np.float32))
    own = skill.index_.keys
    if keys is not None:
        probs = probs[:, [own.index(k) for k in keys]]
    return list(keys if keys is not None else own), answers, probs


def answer_parity(reference: Outcomes, exported: Outcomes, limits: ParityLimits) -> ParityReport:
    """Same answers (entry or decline) and the largest entry-probability difference."""
    same = np.array([a == b for a, b in zip(reference[1], exported[1], strict=True)])
    diff = np.abs(reference[2] - exported[2])
    agreement, max_diff = float(same.mean()), float(diff.max())
    passed = agreement >= limits.min_agreement and max_diff <= limits.max_prob_diff
    return ParityReport(len(same), agreement, max_diff, float(diff.mean()), passed, limits)


def answer_accuracy(answers: Sequence[str | None], queries: Sequence[Query]) -> float:
    """Points of queries answered right: the gold entry, or a decline out of scope."""
    right = sum(a == gold for a, (_, gold) in zip(answers, queries, strict=True))
    return 100.0 * right / len(queries)


def answer_gate(
    reference: Sequence[str | None],
    exported: Sequence[str | None],
    queries: Sequence[Query],
    margin: float,
) -> GateReport:
    """The accuracy gate on answers, torch skill against the export."""
    return GateReport(len(queries), answer_accuracy(reference, queries),
                      answer_accuracy(exported, queries), margin,
                      metric="answer accuracy")  # fmt: skip
