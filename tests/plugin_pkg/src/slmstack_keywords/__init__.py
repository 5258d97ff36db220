"""A third-party skill: the label whose training words a text shares most.

Nothing in slmstack names this package. Installed, it is found through the
``slmstack.skills`` entry-point group, trains from ``slmstack train``, runs in workflows,
and saves and loads like any built-in skill.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from slmstack.artifacts import data_hash
from slmstack.data.readers import read_examples
from slmstack.skills.base import Skill, Tensors
from slmstack.skills.params import Check, Interval
from slmstack.types import Example, Prediction

_WORD = re.compile(r"[a-z]+")


class KeywordClassifier(Skill):
    """Counts each label's most frequent training words; predicts the best overlap."""

    skill_name = "keywords.KeywordClassifier.v1"
    produces = frozenset({"label"})
    fitted_attribute = "classes_"
    constraints: ClassVar[Mapping[str, Check]] = {"words_per_label": Interval(int, 1, None)}

    def __init__(self, *, words_per_label: int = 20):  # keywords kept for each label
        self.words_per_label = words_per_label

    @classmethod
    def read_training_data(cls, path: Path, **options: Any) -> list[Example]:
        return read_examples(path, **options)

    def fit(self, examples: Sequence[Example]) -> Self:
        self._check_params()
        start = time.perf_counter()
        counts: dict[str, Counter[str]] = {}
        for ex in examples:
            counts.setdefault(ex.label, Counter()).update(_WORD.findall(ex.text.lower()))
        self.classes_ = sorted(counts)
        vocab = sorted({w for c in counts.values() for w, _ in c.most_common(self.words_per_label)})
        self.vocab_ = vocab
        self.weights_ = np.array(
            [[counts[label][w] for w in vocab] for label in self.classes_], dtype=np.float32
        )
        self.provenance_ = self._provenance(
            data_sha256=data_hash((ex.text, ex.label) for ex in examples),
            rows=len(examples), seconds=time.perf_counter() - start,
        )  # fmt: skip
        return self

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        index = {w: i for i, w in enumerate(self.vocab_)}
        out = []
        for text in texts:
            x = np.zeros(len(self.vocab_), dtype=np.float32)
            for w in _WORD.findall(text.lower()):
                if w in index:
                    x[index[w]] = 1.0
            score = self.weights_ @ x
            best = int(score.argmax())
            total = float(score.sum())
            out.append(
                Prediction(
                    label=self.classes_[best],
                    confidence=float(score[best]) / total if total else 0.0,
                )
            )
        return out

    def _state(self) -> tuple[dict[str, Any], Tensors]:
        return {"labels": self.classes_, "vocab": self.vocab_}, {"weights": {"w": self.weights_}}

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        self.classes_ = list(config["labels"])
        self.vocab_ = list(config["vocab"])
        self.weights_ = tensors["weights"]["w"]
