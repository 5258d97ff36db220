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

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

from slmstack.backends.base import (
    Backend,
    ChatMessage,
    Completion,
    CompletionRequest,
    cut_at_stops,
)
from slmstack.backends.json_decoding import generate_json
from slmstack.errors import ArtifactError, BackendError, ConfigError, ModelError
from slmstack.models.causal_lm import load_causal_lm
from slmstack.types import Usage


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
        ids = self._checked_ids(request)
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

    def stream(self, request: CompletionRequest) -> Iterator[str]:
        """Generate one chat completion with the base model, token by token.

        Generation runs in a thread and feeds a ``TextIteratorStreamer``; closing the
        iterator stops it after the current token. A ``json_schema`` request is decoded
        by :func:`~slmstack.backends.json_decoding.generate_json`, which does not stream:
        its text comes as one piece.
        """
        return self._stream(request, adapter=None)

    def _stream(self, request: CompletionRequest, *, adapter: str | None) -> Iterator[str]:
        if request.json_schema is not None:
            yield self._complete(request, adapter=adapter).text
            return
        ids = self._checked_ids(request)
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        class _Cancelled(StoppingCriteria):  # type: ignore[misc]
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return stop.is_set()

        stop = threading.Event()
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = {**self._generate_kwargs(request), "streamer": streamer,
                  "stopping_criteria": StoppingCriteriaList([_Cancelled()])}  # fmt: skip
        failed: list[BaseException] = []

        def generate() -> None:
            try:
                with self._lock, self._adapter_context(adapter), torch.inference_mode():
                    self.model.generate(torch.tensor([ids]), **kwargs)
            except BaseException as exc:  # handed to the consumer below
                failed.append(exc)
                streamer.end()  # unblocks the consumer

        worker = threading.Thread(target=generate, name=f"stream-{self.name}", daemon=True)
        worker.start()
        try:
            yield from cut_at_stops((p for p in streamer if p), request.stop)
        finally:
            stop.set()  # ends the generation after its current token
            worker.join()
        if failed:
            raise BackendError(f"{self.name} failed while streaming: {failed[0]}") from failed[0]

    def _checked_ids(self, request: CompletionRequest) -> list[int]:
        ids = self.prompt_ids(tuple(request.messages))
        if len(ids) + request.max_tokens > self.window:
            raise BackendError(
                f"{self.name}: prompt of {len(ids)} tokens plus max_tokens={request.max_tokens} "
                f"exceeds the {self.window}-token window. Shorten the prompt or lower max_tokens."
            )
        return ids

    def _generate_kwargs(self, request: CompletionRequest) -> dict[str, Any]:
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
        return kwargs

    def _generate(self, ids: list[int], request: CompletionRequest) -> tuple[str, int, str]:
        kwargs = self._generate_kwargs(request)
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

    def stream(self, request: CompletionRequest) -> Iterator[str]:
        return self.parent._stream(request, adapter=self.adapter)

    def count_tokens(self, text: str) -> int:
        return self.parent.count_tokens(text)
