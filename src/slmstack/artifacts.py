"""Helpers for skill folders: config, file hashes, model card, environment versions."""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from slmstack.errors import ArtifactError
from slmstack.models.hashing import sha256_file

CONFIG = "config.json"
CARD = "model_card.md"
FORMAT_VERSION = 1


def library_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of Python and the libraries that shape a model's numbers."""
    versions = {"python": platform.python_version()}
    for pkg in ("slmstack", "torch", "transformers", "tokenizers", "scikit-learn", *extra):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return versions


def data_hash(rows: Iterable[tuple[str, ...]]) -> str:
    """sha256 over the training rows, independent of the file format they came from."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def write_config(folder: Path, config: Mapping[str, Any], weight_files: Iterable[str]) -> None:
    """Write ``config.json`` with the sha256 of each weight file, for verification on load."""
    body = dict(config)
    body["format_version"] = FORMAT_VERSION
    body["files"] = {name: sha256_file(folder / name) for name in weight_files}
    (folder / CONFIG).write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")


def read_config(folder: Path) -> dict[str, Any]:
    """Read ``config.json`` of a skill folder."""
    path = folder / CONFIG
    if not folder.is_dir():
        raise ArtifactError(f"{folder} is not a folder; pass the folder a skill was saved to.")
    if not path.is_file():
        raise ArtifactError(f"{folder} has no {CONFIG}; it is not a saved skill.")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    return config


def verify_files(folder: Path, config: Mapping[str, Any]) -> None:
    """Check every weight file listed in the config against its recorded sha256."""
    files = config.get("files", {})
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"{folder} is missing {name}; the skill folder is incomplete.")
        if sha256_file(path) != expected:
            raise ArtifactError(
                f"{path} does not match the sha256 recorded in {CONFIG}; it was modified "
                "after saving. Re-save the skill or restore the file."
            )


def read_verified_config(folder: Path, skill_name: str, kind: str) -> dict[str, Any]:
    """Read ``config.json`` of a ``skill_name`` folder and verify its weight files.

    ``kind`` is the class name used in the error when the folder holds another skill.
    """
    config = read_config(folder)
    if config.get("skill") != skill_name:
        raise ArtifactError(f"{folder} holds a {config.get('skill')!r}, not a {kind}")
    verify_files(folder, config)
    return config


def write_model_card(folder: Path, title: str, sections: Mapping[str, Any]) -> None:
    """Write a Markdown model card with one section per key (values as JSON)."""
    lines = [f"# {title}", ""]
    for heading, value in sections.items():
        lines.append(f"## {heading}")
        lines.append("")
        if isinstance(value, Mapping):
            for k, v in value.items():
                lines.append(f"- **{k}**: {v}")
        else:
            lines.append(str(value))
        lines.append("")
    (folder / CARD).write_text("\n".join(lines))
