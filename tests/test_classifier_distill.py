"""Distillation into ``TextClassifier``: a teacher's soft labels train the student's encoder."""

from collections.abc import Sequence

import numpy as np
import pytest

from fixtures import QUERIES, TRAIN
from slmstack import ConfigError, DataError, TextClassifier, load
from slmstack.errors import DataWarning
from slmstack.skills._classifier_training import soft_targets


class TableTeacher:
    """A teacher with fixed probabilities per label column (its own column order)."""

    def __init__(self, classes: Sequence[str], row: Sequence[float]):
        self.classes_ = list(classes)
        self.row = np.asarray(row, dtype=np.float64)
        self.calls: list[list[str]] = []

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.tile(self.row, (len(texts), 1))


def test_soft_targets_follow_the_students_label_order_and_soften_with_temperature():
    teacher = TableTeacher(["refund", "card", "password", "other"], [0.7, 0.2, 0.1, 0.0])
    sharp = soft_targets(teacher, ["a", "b"], ["card", "password", "refund"],
                         weight=0.5, temperature=1.0)  # fmt: skip
    # the teacher's extra label is dropped and the rest renormalised, in the student's order
    np.testing.assert_allclose(sharp.probs[0], [0.2, 0.1, 0.7], atol=1e-6)
    soft = soft_targets(teacher, ["a"], ["card", "password", "refund"],
                        weight=0.5, temperature=2.0)  # fmt: skip
    expected = np.sqrt([0.2, 0.1, 0.7]) / np.sqrt([0.2, 0.1, 0.7]).sum()
    np.testing.assert_allclose(soft.probs[0], expected, atol=1e-6)
    assert soft.probs[0].max() < sharp.probs[0].max()  # a higher temperature is softer


def test_a_teacher_missing_a_label_is_refused_with_the_fix():
    teacher = TableTeacher(["card", "refund"], [0.5, 0.5])
    with pytest.raises(DataError, match=r"does not know 1 of the data's labels \('password'\)"):
        soft_targets(teacher, ["a"], ["card", "password", "refund"], weight=0.5, temperature=2)


def test_a_teacher_needs_the_finetune_strategy():
    teacher = TableTeacher(["card", "password", "refund"], [0.2, 0.3, 0.5])
    with pytest.raises(ConfigError, match="use strategy='finetune'"):
        TextClassifier(strategy="head").fit(TRAIN, teacher=teacher)


def refund_mass(clf: TextClassifier) -> float:
    col = clf.classes_.index("refund")
    return float(clf.predict_proba(QUERIES).mean(axis=0)[col])


def test_the_teachers_soft_labels_pull_the_student_towards_them(tmp_path):
    """A teacher that always says 'refund' moves the student's mass there; gold-only does not."""
    labels = sorted({ex.label for ex in TRAIN})
    row = [0.9 if label == "refund" else 0.1 / (len(labels) - 1) for label in labels]
    teacher = TableTeacher(labels, row)
    common = {"strategy": "finetune", "epochs": 2, "batch_size": 8, "seed": 0,
              "learning_rate": 2e-4, "head_learning_rate": 1e-2, "patience": 5, "scope_alpha": 0.0}  # fmt: skip
    gold = TextClassifier(**common).fit(TRAIN)
    kd = TextClassifier(**common, distill_weight=1.0, distill_temperature=1.0)
    with pytest.warns(DataWarning, match="every epoch scored below the weights it started"):
        kd.fit(TRAIN, teacher=teacher)
    # the teacher labelled the training texts only, never the held-out validation split
    assert len(teacher.calls) == 1 and len(teacher.calls[0]) == kd.metrics_["n_train"]
    # its soft labels pulled the student to 'refund' (validation fell at every epoch) ...
    assert max(h["val_metric"] for h in kd.history_) < min(h["val_metric"] for h in gold.history_)
    # ... so validation kept the weights the student started from, not the teacher's pull
    assert kd.best_epoch_ == 0 and abs(refund_mass(kd) - refund_mass(gold)) < 0.05
    assert gold.teacher_ is None
    assert kd.teacher_ == {"skill": "TableTeacher", "base": "", "weight": 1.0, "temperature": 1.0}
    kd.save(tmp_path / "kd")
    again = load(tmp_path / "kd")
    assert isinstance(again, TextClassifier) and again.teacher_ == kd.teacher_
    np.testing.assert_allclose(again.predict_proba(QUERIES), kd.predict_proba(QUERIES), atol=1e-5)
    # resumed on gold labels, the encoder still holds what the teacher taught: kept on record
    again.set_params(epochs=1)
    again.resume(TRAIN)
    assert again.teacher_ == kd.teacher_ and again.provenance_.resumed
