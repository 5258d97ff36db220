"""Persistence helpers of :class:`~slmstack.skills.classifier.TextClassifier`.

``config.json`` holds everything needed to rebuild the skill; the model card says
where it came from (base model and hash, data hash, metrics, time, versions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors.torch import load_file, save_file
from torch import nn

from slmstack.errors import ArtifactError
from slmstack.models.encoder import load_encoder, load_tokenizer
from slmstack.models.resolve import ModelSource, resolve
from slmstack.skills._scope import ScopeModel
from slmstack.artifacts import library_versions, write_config, write_model_card

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
            "Out-of-scope flag": _scope_card(clf),
            "Library versions": library_versions(),
        },
    )


def _scope_card(clf: TextClassifier) -> dict[str, Any] | str:
    if clf.scope_ is None:
        return "none (saved before slmstack had one)"
    return {
        "method": "Mahalanobis distance to the nearest label mean (shared, shrunk covariance), "
        "as a conformal p-value against the validation texts",
        "scope_alpha": clf.scope_alpha,
        "reference texts": len(clf.scope_.reference),
        "smallest possible p-value": round(1 / (len(clf.scope_.reference) + 1), 4),
    }


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


def save_classifier(clf: TextClassifier, folder: Path) -> None:
    """Write the weights, labels, config (with file hashes) and model card into ``folder``."""
    head = {k: v.contiguous() for k, v in clf.net_.head.state_dict().items()}
    save_file(head, str(folder / "head.safetensors"))
    files = ["head.safetensors"]
    if clf.scope_ is not None:
        save_file(clf.scope_.tensors(), str(folder / "scope.safetensors"))
        files.append("scope.safetensors")
    if clf.strategy == "finetune":
        encoder: Any = clf.net_.encoder
        encoder.save_pretrained(str(folder / "encoder"), safe_serialization=True)
        clf.tokenizer_.save_pretrained(str(folder / "encoder"))
        files.append("encoder/model.safetensors")
    (folder / "labels.json").write_text(
        json.dumps(clf.classes_, indent=1, ensure_ascii=False) + "\n"
    )
    write_config(folder, classifier_config(clf), files)
    write_classifier_card(folder, clf)


def restore_classifier(clf: TextClassifier, folder: Path, config: dict[str, Any]) -> None:
    """Fill a classifier built from ``config["params"]`` with its saved state."""
    from slmstack.skills._classifier_training import ClassifierNet

    clf.source_, clf.tokenizer_, encoder = load_saved_encoder(folder, config)
    clf.classes_ = list(config["labels"])
    clf.net_ = ClassifierNet(
        encoder, len(clf.classes_), normalize=clf.normalize, dropout=clf.dropout
    )
    clf.net_.head.load_state_dict(load_file(str(folder / "head.safetensors")))
    clf.net_.eval()
    # Skills saved before the scope model existed have no file: no scope flags then.
    clf.scope_ = (
        ScopeModel.from_tensors(load_file(str(folder / "scope.safetensors")))
        if "scope.safetensors" in config["files"]
        else None
    )
    clf.window_ = int(config["window"])
    clf.temperature_ = float(config["temperature"])
    clf.metrics_ = dict(config["metrics"])
    clf.history_ = list(config["history"])
    clf.best_epoch_ = int(config["best_epoch"])
    clf.train_seconds_ = float(config["train_seconds"])
    clf.data_sha256_ = config["data"]["sha256"]
    clf.data_rows_ = int(config["data"]["rows"])
    clf.resumed_ = bool(config["resumed"])
