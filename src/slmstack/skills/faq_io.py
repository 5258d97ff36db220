"""Saving and loading retrieval skills: KB/chunks as JSONL, vectors as safetensors.

Layout of a saved answerer folder::

    config.json         params, calibration, threshold, metrics, sha256 of every file
    model_card.md
    kb.jsonl            one entry per line
    index.safetensors   question vectors; index.json: their entry ids and texts
    encoder/            only when the encoder was fine-tuned (safetensors + tokenizer)

An encoder that was not fine-tuned is referenced by its alias and sha256, not copied.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmstack.errors import ArtifactError
from slmstack.models.resolve import ModelSource, resolve
from slmstack.retrieval.encoder import SentenceEncoder
from slmstack.retrieval.index import VectorIndex
from slmstack.retrieval.knowledge import KBEntry
from slmstack.artifacts import (
    library_versions,
    read_verified_config,
    write_config,
    write_model_card,
)

if TYPE_CHECKING:
    from slmstack.skills.faq import FAQAnswerer


def kb_sha256(entries: Sequence[KBEntry]) -> str:
    """sha256 of the KB content, independent of file format."""
    digest = hashlib.sha256()
    for e in entries:
        body = e.to_dict()
        body.pop("source")
        digest.update(json.dumps(body, ensure_ascii=False, sort_keys=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def base_provenance(source: ModelSource) -> dict[str, Any]:
    """What a config records about the base encoder."""
    return {
        "ref": source.ref,
        "origin": source.origin,
        "sha256": source.sha256,
        "licence": source.licence,
    }


def save_encoder_ref(encoder: SentenceEncoder, folder: Path, *, finetuned: bool) -> list[str]:
    """Copy a fine-tuned encoder into ``folder/encoder``; a pretrained one is referenced only."""
    if not finetuned:
        return []
    weights = encoder.save(folder / "encoder")
    return [f"encoder/{weights}"]


def load_encoder_ref(folder: Path, config: dict[str, Any]) -> SentenceEncoder:
    """Rebuild the encoder of a saved retrieval skill and check it is the one it used."""
    params = config["params"]
    kwargs = {
        "max_length": params["max_length"],
        "batch_size": params["batch_size"],
        "precision": params["precision"],
    }
    base = config["base"]
    if config["finetuned"]:
        local = resolve(folder / "encoder")
        source = ModelSource(
            base["ref"], base["origin"], local.path, local.weights, base["sha256"],
            base["licence"], True,
        )  # fmt: skip
        return SentenceEncoder(source, **kwargs)
    source = resolve(params["base"], allow_pickle=params["allow_pickle"])
    if base["sha256"] and source.sha256 != base["sha256"]:
        raise ArtifactError(
            f"{folder} was built on base {params['base']!r} with sha256 {base['sha256']}, but "
            f"that reference now resolves to {source.sha256}; its saved vectors would not match "
            "new queries. Install the original base model."
        )
    return SentenceEncoder(source, **kwargs)


def save_faq(skill: FAQAnswerer, folder: Path, name: str) -> Path:
    """Write an answerer folder (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = list(skill.entries_.values())
    with (folder / "kb.jsonl").open("w", encoding="utf-8") as fh:
        for e in entries:
            fh.write(json.dumps(e.to_dict(), ensure_ascii=False) + "\n")
    files = ["kb.jsonl", *skill.index_.save(folder)]
    provenance = base_provenance(skill.encoder_.source)
    files += save_encoder_ref(skill.encoder_, folder, finetuned=skill.finetuned_)
    kb_hash = kb_sha256(entries)
    config = {
        "skill": name,
        "params": skill.get_params(),
        "base": provenance,
        "finetuned": skill.finetuned_,
        "calibrator": skill.calibrator_.to_dict(),
        "threshold": skill.threshold_,
        "metrics": skill.metrics_,
        "history": skill.history_,
        "train_seconds": skill.train_seconds_,
        "n_pairs": skill.n_pairs_,
        "kb": {"sha256": kb_hash, "entries": len(entries), "questions": len(skill.index_)},
        "versions": library_versions(),
    }
    write_config(folder, config, files)
    write_model_card(
        folder,
        "FAQAnswerer",
        {
            "Base encoder": provenance | {"fine-tuned on pairs": skill.n_pairs_},
            "Knowledge base": {
                "entries": len(entries),
                "questions": len(skill.index_),
                "sha256": kb_hash,
            },
            "Calibration and threshold": {
                k: round(v, 4) if isinstance(v, float) else v for k, v in skill.metrics_.items()
            },
            "How it answers": "Returns the stored answer of the nearest entry, never generated "
            "text; abstains with 'no_match' when the calibrated confidence is below the "
            "threshold.",
            "Library versions": library_versions(),
        },
    )
    return folder


def load_faq(
    folder: Path, name: str
) -> tuple[dict[str, Any], SentenceEncoder, VectorIndex, list[KBEntry]]:
    """Read and verify an answerer folder."""
    config = read_verified_config(folder, name, name)
    encoder = load_encoder_ref(folder, config)
    index = VectorIndex.load(folder)
    if index.dim != encoder.dim:
        raise ArtifactError(
            f"{folder}: index vectors have size {index.dim} but the encoder gives {encoder.dim}"
        )
    lines = (folder / "kb.jsonl").read_text(encoding="utf-8").splitlines()
    try:
        entries = [KBEntry.from_dict(json.loads(line)) for line in lines if line.strip()]
    except (json.JSONDecodeError, KeyError) as exc:
        raise ArtifactError(f"{folder}/kb.jsonl is damaged: {exc}") from exc
    return config, encoder, index, entries
