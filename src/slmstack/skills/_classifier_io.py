"""How a :class:`~slmstack.skills.classifier.TextClassifier` is saved and loaded.

The config entries and tensors of the skill folder, the private encoder a tuned skill
carries (``encoder/``), and rebuilding the network on load, sharing a base model that
is already in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmstack.models.resolve import resolve
from slmstack.models.shared import shared_encoder, shared_tokenizer
from slmstack.skills._classifier_training import ClassifierNet
from slmstack.skills._labels import saved_labels, write_labels
from slmstack.skills._scope import ScopeModel, scope_card
from slmstack.skills.base import Tensors

if TYPE_CHECKING:
    from slmstack.skills.classifier import TextClassifier


def classifier_state(skill: TextClassifier) -> tuple[dict[str, Any], Tensors]:
    """The config entries and tensors of a fitted classifier."""
    tensors: Tensors = {"head": dict(skill.net_.head.state_dict())}
    if skill.scope_ is not None:
        tensors["scope"] = skill.scope_.tensors()
    config = {
        "labels": skill.classes_,
        "temperature": skill.temperature_,
        "window": skill.window_,
        "history": skill.history_,
        "best_epoch": skill.best_epoch_,
        "strategy": skill.strategy_,
        "teacher": skill.teacher_,
        "head_refit": skill.head_refit_,
    }
    return config, tensors


def classifier_card(skill: TextClassifier) -> dict[str, Any]:
    """The model card entries of a fitted classifier."""
    return {
        "Strategy": skill.strategy_,
        "Labels": ", ".join(skill.classes_),
        "Head fitted on": head_card(skill),
        "Best epoch": skill.best_epoch_,
        "Out-of-scope flag": scope_card(skill.scope_, skill.scope_alpha),
    }


def head_card(skill: TextClassifier) -> str:
    """Which examples the head was fitted on, and which head the calibration saw."""
    n_train, n_val = int(skill.metrics_["n_train"]), int(skill.metrics_["n_val"])
    if skill.head_refit_ is None:  # saved before the config recorded it
        return "not recorded"
    if skill.head_refit_:
        return (f"all {n_train + n_val} examples, after calibration; the temperature, the "
                f"scope model and the val_ metrics come from the head fitted on the "
                f"{n_train} training examples, scored on the {n_val} held out")  # fmt: skip
    return f"the {n_train} training examples ({n_val} held out for validation)"


def write_classifier_files(skill: TextClassifier, folder: Path) -> None:
    """``labels.json``, and the tuned encoder with its tokenizer unless the base is frozen."""
    write_labels(folder, skill.classes_)
    if skill.strategy_ != "head":  # the skill carries its own encoder
        encoder: Any = skill.net_.encoder
        encoder.save_pretrained(str(folder / "encoder"), safe_serialization=True)
        skill.tokenizer_.save_pretrained(str(folder / "encoder"))


def restore_classifier(
    skill: TextClassifier, config: Mapping[str, Any], tensors: Tensors, folder: Path
) -> None:
    """Rebuild a saved classifier's network, labels, calibration and scope model."""
    base = skill.provenance_.base
    skill.strategy_ = str(config.get("strategy", skill.strategy))  # older saves lack it
    if skill.strategy_ != "head":
        local = resolve(str(folder / "encoder"))
        skill.source_ = local.with_provenance(base)
    else:
        skill.source_ = resolve(
            skill.base, allow_pickle=skill.allow_pickle, expect_sha256=base.get("sha256")
        )
    skill.tokenizer_ = shared_tokenizer(skill.source_.path)
    skill.classes_ = saved_labels(folder, config)
    skill.net_ = ClassifierNet(shared_encoder(skill.source_), len(skill.classes_),
                               normalize=skill.normalize, dropout=skill.dropout)  # fmt: skip
    skill.net_.head.load_state_dict(tensors["head"])
    skill.net_.eval()
    skill.scope_ = ScopeModel.from_tensors(tensors["scope"]) if "scope" in tensors else None
    skill.window_ = int(config["window"])
    skill.temperature_ = float(config["temperature"])
    skill.metrics_ = dict(skill.provenance_.metrics)
    skill.history_, skill.best_epoch_ = list(config["history"]), int(config["best_epoch"])
    skill.teacher_ = config.get("teacher")  # saves before distillation lack it
    skill.head_refit_ = config.get("head_refit")  # older saves lack it: "not recorded"
    skill.duplicates_dropped_ = skill.provenance_.duplicates_dropped
