"""Persistence helpers of :class:`~slmstack.skills.classifier.TextClassifier`.

``config.json`` holds everything needed to rebuild the skill; the model card says
where it came from (base model and hash, data hash, metrics, time, versions).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from slmstack.errors import ArtifactError
from slmstack.models.encoder import load_encoder, load_tokenizer
from slmstack.models.resolve import ModelSource, resolve
from slmstack.skills.artifact import library_versions, write_model_card

if TYPE_CHECKING:
    from slmstack.skills.classifier import TextClassifier


def classifier_config(clf: TextClassifier) -> dict[str, Any]:
    """The ``config.json`` body of a fitted classifier."""
    return {
        "skill": clf.skill_name,
        "params": clf.get_params(),
        "labels": clf.classes_,
        "temperature": clf.temperature_,
        "window": clf.window_,
        "base": {
            "ref": clf.source_.ref,
            "origin": clf.source_.origin,
            "sha256": clf.source_.sha256,
            "licence": clf.source_.licence,
        },
        "metrics": clf.metrics_,
        "history": clf.history_,
        "best_epoch": clf.best_epoch_,
        "train_seconds": clf.train_seconds_,
        "data": {"sha256": clf.data_sha256_, "rows": clf.data_rows_},
        "resumed": clf.resumed_,
        "versions": library_versions(),
    }


def write_classifier_card(folder: Path, clf: TextClassifier) -> None:
    """Write ``model_card.md`` for a fitted classifier."""
    write_model_card(
        folder,
        f"TextClassifier ({clf.strategy})",
        {
            "Base model": {
                "reference": clf.source_.ref,
                "sha256": clf.source_.sha256,
                "licence": clf.source_.licence,
            },
            "Labels": ", ".join(clf.classes_),
            "Training data": {"sha256": clf.data_sha256_, "rows": clf.data_rows_},
            "Validation metrics": {k: round(v, 4) for k, v in clf.metrics_.items()},
            "Training": {
                "seconds": round(clf.train_seconds_, 1),
                "best epoch": clf.best_epoch_,
                "resumed": clf.resumed_,
                **{k: v for k, v in clf.get_params().items() if k != "allow_pickle"},
            },
            "Library versions": library_versions(),
        },
    )


def load_saved_encoder(folder: Path, config: dict[str, Any]) -> tuple[ModelSource, Any, nn.Module]:
    """The (source, tokenizer, encoder) of a saved classifier.

    A fine-tuned skill carries its own encoder; a ``head`` skill re-resolves its base and
    refuses a base whose weights changed since training.
    """
    base = config["base"]
    params = config["params"]
    if params["strategy"] == "finetune":
        encoder_dir = folder / "encoder"
        local = resolve(str(encoder_dir))
        # Keep the provenance of the original base for the model card.
        source = ModelSource(
            base["ref"], base["origin"], encoder_dir, local.weights, base["sha256"],
            base["licence"], True,
        )  # fmt: skip
        return source, load_tokenizer(encoder_dir), load_encoder(local)
    source = resolve(params["base"], allow_pickle=bool(params.get("allow_pickle", False)))
    if base["sha256"] and source.sha256 != base["sha256"]:
        raise ArtifactError(
            f"{folder} was trained on base {params['base']!r} with sha256 {base['sha256']}, "
            f"but that reference now resolves to {source.sha256}. Install the original base "
            "model."
        )
    return source, load_tokenizer(source.path), load_encoder(source)
