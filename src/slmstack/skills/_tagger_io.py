"""Shared pieces of the extraction skills: input checks, seqeval metrics, tagger artifacts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors.torch import load_file, save_file

from slmstack.data.tagging import TaggedExample, spans_to_tags
from slmstack.errors import ArtifactError, MissingDependencyError
from slmstack.models.resolve import ModelSource
from slmstack.artifacts import library_versions, write_config, write_model_card
from slmstack.types import Span

if TYPE_CHECKING:
    from slmstack.skills.tagger import EntityTagger


def save_tagger(tagger: EntityTagger, folder: Path, name: str) -> None:
    """Weights, config (with weight hashes) and model card of a fitted :class:`EntityTagger`.

    The tag head and casing embeddings go to ``head.safetensors``, the fine-tuned encoder
    and its tokenizer to ``encoder/``.
    """
    head = {
        k: v.contiguous() for k, v in tagger.net_.state_dict().items()
        if not k.startswith("encoder.")
    }  # fmt: skip
    save_file(head, str(folder / "head.safetensors"))
    encoder: Any = tagger.net_.encoder
    encoder.save_pretrained(str(folder / "encoder"), safe_serialization=True)
    tagger.tokenizer_.save_pretrained(str(folder / "encoder"))
    metrics = {k: v for k, v in tagger.metrics_.items() if isinstance(v, int | float)}
    config = {
        "skill": name,
        "params": tagger.get_params(),
        "tags": tagger.tags_,
        "temperature": tagger.temperature_,
        "window": tagger.window_,
        "base": {
            "ref": tagger.source_.ref,
            "origin": tagger.source_.origin,
            "sha256": tagger.source_.sha256,
            "licence": tagger.source_.licence,
        },
        "metrics": metrics,
        "per_type": tagger.metrics_.get("per_type", {}),
        "history": tagger.history_,
        "best_epoch": tagger.best_epoch_,
        "train_seconds": tagger.train_seconds_,
        "data": {"sha256": tagger.data_sha256_, "rows": tagger.data_rows_},
        "versions": library_versions(("seqeval",)),
    }
    write_config(folder, config, ["head.safetensors", "encoder/model.safetensors"])
    labels = sorted({t[2:] for t in tagger.tags_ if t != "O"})
    write_model_card(
        folder,
        "EntityTagger",
        {
            "Base model": {
                "reference": tagger.source_.ref,
                "sha256": tagger.source_.sha256,
                "licence": tagger.source_.licence,
            },
            "Entity types": ", ".join(labels),
            "Training data": {"sha256": tagger.data_sha256_, "rows": tagger.data_rows_},
            "Validation metrics (seqeval, entity level)": {
                k: round(v, 4) for k, v in metrics.items()
            },
            "Training": {
                "seconds": round(tagger.train_seconds_, 1),
                "best epoch": tagger.best_epoch_,
                **{k: v for k, v in tagger.get_params().items() if k != "allow_pickle"},
            },
            "Library versions": library_versions(("seqeval",)),
        },
    )


def restore_tagger(tagger: EntityTagger, folder: Path, config: dict[str, Any]) -> None:
    """Rebuild the network and fitted state of ``tagger`` from a verified saved folder."""
    base = config["base"]
    source = ModelSource(
        base["ref"], "saved", folder / "encoder", None, base["sha256"], base["licence"], True
    )
    tagger.tags_ = list(config["tags"])
    tagger._build(source, folder / "encoder", len(tagger.tags_))
    missing, unexpected = tagger.net_.load_state_dict(
        load_file(str(folder / "head.safetensors")), strict=False
    )
    if unexpected or any(not k.startswith("encoder.") for k in missing):
        raise ArtifactError(
            f"{folder}/head.safetensors does not fit this tagger (missing "
            f"{[k for k in missing if not k.startswith('encoder.')]}, unexpected "
            f"{unexpected}); re-save the skill"
        )
    tagger.net_.eval()
    tagger.temperature_ = float(config["temperature"])
    tagger.metrics_ = {**config["metrics"], "per_type": config["per_type"]}
    tagger.history_ = list(config["history"])
    tagger.best_epoch_ = int(config["best_epoch"])
    tagger.train_seconds_ = float(config["train_seconds"])
    tagger.misaligned_ = int(config["metrics"].get("misaligned_spans", 0))
    tagger.data_sha256_ = config["data"]["sha256"]
    tagger.data_rows_ = int(config["data"]["rows"])
