"""Causal LMs through transformers: GGUF files dequantized to fp32, cached and verified.

A GGUF generator (an alias, a file or a folder) is dequantized by transformers into fp32
weights, which LoRA can train. Dequantizing takes tens of seconds, so the fp32 copy is
cached under ``~/.cache/slmstack/dequantized/`` with the sha256 of its source GGUF and of
its weights, verified on every load.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from slmstack.errors import IntegrityError, ModelError
from slmstack.models.catalog import known_models
from slmstack.models.encoder import quiet_loading
from slmstack.models.gguf import gguf_path
from slmstack.models.hashing import sha256_file
from slmstack.models.parts import cache_root
from slmstack.models.resolve import resolve


def _strip_quantization(model: Any) -> None:
    """Make a GGUF-dequantized model saveable as plain fp32 weights (see MODELS.md)."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


_CACHE_META = "slmstack_source.json"


def _save_cache(model: Any, tokenizer: Any, folder: Path, gguf_sha256: str) -> None:
    # Written beside the target and renamed, so a concurrent reader never sees half a folder.
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    meta = {"gguf_sha256": gguf_sha256, "weights_sha256": sha256_file(tmp / "model.safetensors")}
    (tmp / _CACHE_META).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    if folder.is_dir() and not (folder / _CACHE_META).is_file():
        shutil.rmtree(folder)  # an older or interrupted cache without provenance
    try:
        tmp.rename(folder)
    except OSError:  # another process finished first; its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)


def _cache_is_valid(folder: Path, gguf_sha256: str) -> bool:
    """Whether ``folder`` holds an intact fp32 copy of the GGUF with ``gguf_sha256``."""
    meta_path, weights = folder / _CACHE_META, folder / "model.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        return False
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("gguf_sha256") != gguf_sha256 or sha256_file(weights) != meta.get("weights_sha256"):
        raise IntegrityError(
            f"the dequantized cache {folder} does not match its recorded sha256; it was "
            f"modified or half-written. Delete the folder and it will be rebuilt."
        )
    return True


def load_causal_lm(ref: str, *, cache_dequantized: bool = True) -> tuple[Any, Any, str | None]:
    """Load ``(model, tokenizer, base sha256)`` for an alias, GGUF file, folder or hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_loading()  # before resolve(), which may download the model: its bars stay on
    sha: str | None
    is_gguf = ref in known_models() or ref.endswith(".gguf") or any(Path(ref).glob("*.gguf"))
    try:
        if is_gguf:
            gguf = gguf_path(ref)
            sha = sha256_file(gguf)
            cached = cache_root() / "dequantized" / sha[:16]
            if cache_dequantized and _cache_is_valid(cached, sha):
                model = AutoModelForCausalLM.from_pretrained(str(cached), dtype=torch.float32)
                tokenizer = AutoTokenizer.from_pretrained(str(cached))
            else:
                kw = {"gguf_file": gguf.name}
                tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kw)
                model = AutoModelForCausalLM.from_pretrained(
                    str(gguf.parent), dtype=torch.float32, **kw
                )
                _strip_quantization(model)
                if cache_dequantized:
                    _save_cache(model, tokenizer, cached, sha)
        else:
            source = resolve(ref)
            sha = source.sha256
            tokenizer = AutoTokenizer.from_pretrained(str(source.path))
            model = AutoModelForCausalLM.from_pretrained(
                str(source.path), dtype=torch.float32, use_safetensors=source.safetensors
            )
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load causal LM {ref!r} with transformers: {exc}") from exc
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, sha
