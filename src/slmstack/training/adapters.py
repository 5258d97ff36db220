"""The on-disk format of a LoRA adapter: PEFT files plus slmstack provenance.

An adapter folder holds PEFT's ``adapter_config.json`` and ``adapter_model.safetensors``
(a few MB), and ``slmstack_adapter.json``: which base it was trained on (alias and
sha256, checked when the adapter is loaded), the training data hash, the
hyper-parameters, the loss curve, and the sha256 of the adapter weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slmstack.errors import ArtifactError
from slmstack.models.hashing import sha256_file

META = "slmstack_adapter.json"
WEIGHTS = "adapter_model.safetensors"


def read_adapter_meta(folder: str | Path) -> dict[str, Any]:
    """Read and verify an adapter folder; return its slmstack metadata."""
    path = Path(folder)
    if not path.is_dir():
        raise ArtifactError(f"adapter folder {path} does not exist; pass the --out of training")
    meta_path = path / META
    if not meta_path.is_file() or not (path / WEIGHTS).is_file():
        raise ArtifactError(
            f"{path} is not a slmstack LoRA adapter: it needs {META} and {WEIGHTS}. "
            "Train one with `slmstack train lora DATA.jsonl --out DIR`."
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ArtifactError(f"{meta_path} must hold a JSON object")
    expected = meta.get("weights_sha256")
    if expected and sha256_file(path / WEIGHTS) != expected:
        raise ArtifactError(
            f"{path / WEIGHTS} does not match the sha256 recorded in {META}; it was modified "
            "after training. Retrain or restore the file."
        )
    return meta


def write_adapter_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Write ``slmstack_adapter.json`` with the sha256 of the adapter weights."""
    body = {**meta, "weights_sha256": sha256_file(folder / WEIGHTS)}
    (folder / META).write_text(
        json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def check_adapter_out(folder: Path, *, force: bool) -> None:
    """Refuse an ``--out`` that saving an adapter would destroy, before training starts.

    A file and a non-empty folder that holds no adapter are refused; an existing adapter
    is replaced only with ``force``.
    """
    if folder.exists() and not folder.is_dir():
        raise ArtifactError(f"--out {folder} is a file; pass a folder path for the adapter.")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / META).is_file():
            raise ArtifactError(
                f"--out {folder} is a non-empty folder that is not a saved adapter; refusing "
                "to replace its files. Pass a new or empty folder."
            )
        if not force:
            raise ArtifactError(
                f"--out {folder} already holds an adapter. Pass --force to replace it, or "
                "choose another folder."
            )
