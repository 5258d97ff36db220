"""Training the encoder of a :class:`~slmstack.skills.classifier.TextClassifier`.

``finetune`` trains it with the head (cross-entropy, optionally a teacher's soft labels);
``fewshot`` trains it on pairs of examples before the head is fitted (``_fewshot.py``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from slmstack.models.encoder import Tokenized
from slmstack.skills._classifier_training import SoftTargets, finetune
from slmstack.skills._fewshot import fewshot_tune
from slmstack.training.loop import LoopConfig, LoopResult

if TYPE_CHECKING:
    from slmstack.skills.classifier import TextClassifier


def tune_encoder(
    skill: TextClassifier, tok_train: Tokenized, y_train: NDArray[np.int64], tok_val: Tokenized,
    y_val: NDArray[np.int64], *, resumed: bool, soft: SoftTargets | None = None,
) -> LoopResult:  # fmt: skip
    """Train the encoder: with the head (``finetune``), or on pairs before it (``fewshot``)."""
    again = "resume " if resumed else ""
    if skill.strategy_ == "fewshot":
        return fewshot_tune(
            skill.net_, tok_train.input_ids, y_train, tok_val.input_ids, y_val,
            cfg=replace(LoopConfig.of(skill), learning_rate=skill.pair_learning_rate),
            pair_iterations=skill.pair_iterations, batch_size=skill.batch_size, seed=skill.seed,
            pad_id=skill._pad_id(), head_c=skill.head_c, metric=skill.metric,
            pairing=skill.pairing, description=f"{again}few-shot pairs")  # fmt: skip

    def evaluate() -> float:
        pred = skill._forward_all(tok_val, what="logits").argmax(axis=1)
        if skill.metric == "macro_f1":
            from sklearn.metrics import f1_score

            return float(f1_score(y_val, pred, average="macro", zero_division=0))
        return float((pred == y_val).mean())

    return finetune(
        skill.net_, tok_train.input_ids, y_train, evaluate=evaluate, cfg=LoopConfig.of(skill),
        batch_size=skill.batch_size, pad_id=skill._pad_id(), seed=skill.seed,
        label_smoothing=skill.label_smoothing, soft=soft,
        description=f"{again}distil" if soft else f"{again}fine-tune",
    )  # fmt: skip
