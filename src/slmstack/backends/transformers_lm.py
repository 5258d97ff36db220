"""A transformers causal LM as a backend: the same GGUF dequantized, or any HF model.

Slower than llama.cpp at inference, but it is a PyTorch module, so LoRA adapters can
be trained on it (:mod:`slmstack.training.lora`) and served on top of it: several
adapters share one base in memory and each request picks one (:meth:`with_adapter`).

Dequantizing a GGUF file takes tens of seconds on 2 cores, so the fp32 result is kept
as safetensors under ``~/.cache/slmstack/dequantized/<sha256 prefix>/`` (about 4 bytes
per parameter: 0.5 GB for SmolLM2, 2 GB for Qwen2.5-0.5B) with the sha256 of both the
source GGUF and the cached weights, verified on every load; ``cache_dequantized=False``
turns this off.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

from slmstack.backends.base import Backend, ChatMessage, Completion, CompletionRequest
from slmstack.backends.factory import gguf_path
from slmstack.backends.json_decoding import generate_json
from slmstack.errors import ArtifactError, BackendError, ConfigError, IntegrityError, ModelError
from slmstack.models.catalog import known_models
from slmstack.models.hashing import sha256_file
from slmstack.models.parts import cache_root
from slmstack.models.resolve import resolve
from slmstack.types import Usage


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
    (tmp / _CACHE_META).write_text(json.dumps(meta, indent=1) + "\n")
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
    meta = json.loads(meta_path.read_text())
    if meta.get("gguf_sha256") != gguf_sha256 or sha256_file(weights) != meta.get("weights_sha256"):
        raise IntegrityError(
            f"the dequantized cache {folder} does not match its recorded sha256; it was "
            f"modified or half-written. Delete the folder and it will be rebuilt."
        )
    return True


def load_causal_lm(ref: str, *, cache_dequantized: bool = True) -> tuple[Any, Any, str | None]:
    """Load ``(model, tokenizer, base sha256)`` for an alias, GGUF file, folder or hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # slmstack shows its own progress
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


class TransformersBackend(Backend):
    """A Hugging Face causal LM (PyTorch, CPU) behind the backend contract.

    Build it with :meth:`from_ref` or ``load_backend(model, runtime="transformers")``.

    Example:
        >>> from slmstack.backends import load_backend
        >>> llm = load_backend("smollm2", runtime="transformers")  # doctest: +SKIP
        >>> tuned = llm.with_adapter("support")  # doctest: +SKIP
    """

    def __init__(self, model: Any, tokenizer: Any, *, name: str, base_sha256: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.base_sha256 = base_sha256
        self.model_sha256 = base_sha256
        self.load_seconds = 0.0
        self.window = int(getattr(model.config, "max_position_embeddings", 2048))
        self._adapters: dict[str, Path] = {}
        self._lock = threading.Lock()
        if not getattr(tokenizer, "chat_template", None):
            raise ModelError(
                f"{name}: the tokenizer has no chat template, so chat messages cannot be "
                "formatted. Use an instruction-tuned model (for example 'smollm2')."
            )

    @classmethod
    def from_ref(
        cls,
        ref: str,
        *,
        adapters: Mapping[str, str | Path] | None = None,
        cache_dequantized: bool = True,
    ) -> TransformersBackend:
        """Load ``ref`` and, optionally, named LoRA adapters on top of it."""
        start = time.perf_counter()
        model, tokenizer, sha = load_causal_lm(ref, cache_dequantized=cache_dequantized)
        backend = cls(model, tokenizer, name=ref, base_sha256=sha)
        for adapter_name, path in (adapters or {}).items():
            backend.add_adapter(adapter_name, path)
        backend.load_seconds = time.perf_counter() - start
        return backend

    # ------------------------------------------------------------------ adapters
    def add_adapter(self, name: str, path: str | Path) -> None:
        """Load a LoRA adapter saved by :func:`slmstack.training.lora.train_lora`."""
        from slmstack.training.adapters import read_adapter_meta

        folder = Path(path)
        meta = read_adapter_meta(folder)
        if self.base_sha256 and meta.get("base_sha256") not in (None, self.base_sha256):
            raise ArtifactError(
                f"adapter {folder} was trained on a base with sha256 {meta['base_sha256']}, "
                f"but this backend runs {self.name!r} with sha256 {self.base_sha256}. Load "
                f"the adapter on its own base ({meta.get('base')!r})."
            )
        if name in self._adapters:
            raise ConfigError(f"an adapter named {name!r} is already loaded; pick another name")
        from peft import PeftModel

        with self._lock:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(folder), adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(folder), adapter_name=name)
            self.model.eval()
        self._adapters[name] = folder

    def adapters(self) -> list[str]:
        """Names of the loaded adapters."""
        return list(self._adapters)

    def with_adapter(self, name: str) -> Backend:
        """A backend view that runs this model with adapter ``name`` (weights shared)."""
        if name not in self._adapters:
            known = ", ".join(self._adapters) or "none"
            raise ConfigError(f"no adapter named {name!r} is loaded (loaded: {known})")
        return _AdapterView(self, name)

    def _adapter_context(self, adapter: str | None) -> AbstractContextManager[Any]:
        if not self._adapters:
            return nullcontext()
        if adapter is None:
            ctx: AbstractContextManager[Any] = self.model.disable_adapter()
            return ctx
        self.model.set_adapter(adapter)
        return nullcontext()

    # ------------------------------------------------------------------ generation
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without special tokens."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt_ids(self, messages: list[ChatMessage] | tuple[ChatMessage, ...]) -> list[int]:
        """Token ids of the chat-formatted prompt, ending with the assistant turn."""
        chat = [{"role": m.role, "content": m.content} for m in messages]
        ids = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, Mapping):
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    def complete(self, request: CompletionRequest) -> Completion:
        """Generate one chat completion with the base model (no adapter)."""
        return self._complete(request, adapter=None)

    def _complete(self, request: CompletionRequest, *, adapter: str | None) -> Completion:
        ids = self.prompt_ids(tuple(request.messages))
        if len(ids) + request.max_tokens > self.window:
            raise BackendError(
                f"{self.name}: prompt of {len(ids)} tokens plus max_tokens={request.max_tokens} "
                f"exceeds the {self.window}-token window. Shorten the prompt or lower max_tokens."
            )
        start = time.perf_counter()
        with self._lock, self._adapter_context(adapter):
            if request.json_schema is not None:
                text, n_out, cut = generate_json(
                    self.model,
                    self.tokenizer,
                    ids,
                    request.json_schema,
                    max_tokens=request.max_tokens,
                    temperature=request.temperature,
                    seed=request.seed,
                )
                finish = "length" if cut else "stop"
            else:
                text, n_out, finish = self._generate(ids, request)
        return Completion(
            text=text,
            model=self.name if adapter is None else f"{self.name}+{adapter}",
            usage=Usage(len(ids), n_out, (time.perf_counter() - start) * 1000),
            finish_reason=finish,  # type: ignore[arg-type]
        )

    def _generate(self, ids: list[int], request: CompletionRequest) -> tuple[str, int, str]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": request.max_tokens,
            "do_sample": request.temperature > 0,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if request.temperature > 0:
            kwargs["temperature"] = request.temperature
            torch.manual_seed(request.seed)
        if request.stop:
            kwargs["stop_strings"] = list(request.stop)
            kwargs["tokenizer"] = self.tokenizer
        with torch.inference_mode():
            out = self.model.generate(torch.tensor([ids]), **kwargs)
        new = out[0, len(ids) :].tolist()
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        cuts = [i for i in (text.find(s) for s in request.stop) if i >= 0]
        if cuts:
            return text[: min(cuts)], len(new), "stop"
        ended = bool(new) and new[-1] == self.tokenizer.eos_token_id
        finish = "length" if len(new) >= request.max_tokens and not ended else "stop"
        return text, len(new), finish


class _AdapterView(Backend):
    """The parent backend with one LoRA adapter active; shares the parent's weights."""

    def __init__(self, parent: TransformersBackend, adapter: str):
        self.parent = parent
        self.adapter = adapter
        self.name = f"{parent.name}+{adapter}"
        self.model_sha256 = parent.model_sha256

    def complete(self, request: CompletionRequest) -> Completion:
        return self.parent._complete(request, adapter=self.adapter)

    def count_tokens(self, text: str) -> int:
        return self.parent.count_tokens(text)
