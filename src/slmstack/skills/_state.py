"""Tensors of a skill folder: one safetensors file per stem, torch or numpy."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from slmstack.errors import ArtifactError


def write_tensors(folder: Path, tensors: Mapping[str, Mapping[str, Any]]) -> None:
    """Write ``folder/<stem>.safetensors`` for each stem (torch or numpy values)."""
    for stem, named in tensors.items():
        target = folder / f"{stem}.safetensors"
        target.parent.mkdir(parents=True, exist_ok=True)
        first = next(iter(named.values()), None)
        if first is not None and type(first).__module__.startswith("torch"):
            from safetensors.torch import save_file as save_torch

            save_torch({k: v.contiguous() for k, v in named.items()}, str(target))
        else:
            from safetensors.numpy import save_file as save_numpy

            save_numpy(dict(named), str(target))


def read_tensors(
    folder: Path, kinds: Mapping[str, str], listed: Collection[str]
) -> dict[str, dict[str, Any]]:
    """Read the files written by :func:`write_tensors` (``kinds``: stem → torch|numpy).

    Each must be one of the ``listed`` files (those the config's hash table verified): a
    stem naming a file the table does not hold, or one outside the folder, is refused.
    """
    out: dict[str, dict[str, Any]] = {}
    for stem, kind in kinds.items():
        path = folder / f"{stem}.safetensors"
        if f"{stem}.safetensors" not in listed:
            raise ArtifactError(
                f"{folder}/config.json names tensors {stem}.safetensors, which are not listed "
                "in its 'files' table, so they cannot be verified; the file was edited or the "
                "folder is incomplete. Re-save the skill."
            )
        if kind == "torch":
            from safetensors.torch import load_file as load_torch

            out[stem] = dict(load_torch(str(path)))
        elif kind == "numpy":
            from safetensors.numpy import load_file as load_numpy

            out[stem] = dict(load_numpy(str(path)))
        else:
            raise ArtifactError(f"{path}: unknown tensor kind {kind!r} (expected torch or numpy)")
    return out
