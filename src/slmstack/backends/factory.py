"""``load_backend(model, runtime=...)``: one entry point from a model alias to a Backend.

Runtimes are plug-ins in the :data:`runtimes` registry (``"llama_cpp"``,
``"transformers"``, ``"openai"``). Loaded local models are shared: two skills that ask
for the same model and options get the same in-memory backend, so a workflow that
summarises and troubleshoots with ``smollm2`` holds one copy of the weights.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from slmstack.backends.base import Backend
from slmstack.models.gguf import gguf_path
from slmstack.registry import Registry

RuntimeFactory = Callable[..., Backend]
runtimes: Registry[RuntimeFactory] = Registry("backend runtime")

_SHARED: dict[str, Backend] = {}
_SHARED_LOCK = threading.Lock()


def load_backend(
    model: str = "smollm2", *, runtime: str = "llama_cpp", shared: bool = True, **options: Any
) -> Backend:
    """Load ``model`` with ``runtime`` and return a :class:`Backend`.

    Args:
        model: alias (``"smollm2"``, ``"qwen2.5-0.5b"``), GGUF file, model folder, Hugging
            Face id, or (for ``runtime="openai"``) the remote model name.
        runtime: ``"llama_cpp"`` (fast GGUF inference), ``"transformers"`` (the same
            GGUF dequantized, or any causal LM; needed for LoRA adapters) or ``"openai"``
            (a remote OpenAI-compatible API; needs ``base_url=...``).
        shared: reuse an already loaded backend with the same model and options.
        options: passed to the runtime unchanged: ``n_ctx``, ``n_threads`` (llama_cpp),
            ``adapters`` (transformers), or for ``"openai"`` ``base_url``, ``api_key_env``,
            ``timeout_s``, ``retries``, ``fallbacks``, ``max_concurrency``, ``tokenizer``,
            ``json_format`` (see :class:`~slmstack.backends.openai_compat.OpenAICompatBackend`).
            A workflow's ``backends: {NAME: {model, runtime, options}}`` and a skill's
            ``backend_options`` / ``generator_options`` arrive here.

    Example:
        >>> from slmstack.backends import load_backend
        >>> llm = load_backend("smollm2")  # doctest: +SKIP
        >>> llm is load_backend("smollm2")  # doctest: +SKIP
        True
        >>> local = load_backend("smollm2", runtime="openai", base_url="http://127.0.0.1:8080/v1",
        ...                      api_key_env=None, tokenizer="smollm2")  # doctest: +SKIP
    """
    factory = runtimes.get(runtime)
    if not shared:
        return factory(model, **options)
    key = json.dumps([runtime, model, options], sort_keys=True, default=str)
    with _SHARED_LOCK:
        backend = _SHARED.get(key)
        if backend is None:
            backend = factory(model, **options)
            _SHARED[key] = backend
        return backend


def forget(backend: Backend) -> None:
    """Stop sharing ``backend``: the next :func:`load_backend` builds a fresh one.

    A backend that closes its resources calls this, so that a closed backend is never
    handed to the next skill that asks for the same model.
    """
    with _SHARED_LOCK:
        for key in [k for k, b in _SHARED.items() if b is backend]:
            del _SHARED[key]


@runtimes.register("llama_cpp")
def _llama_cpp(model: str, **options: Any) -> Backend:
    from slmstack.backends.llama_cpp import LlamaCppBackend

    return LlamaCppBackend(gguf_path(model), name=model, **options)


@runtimes.register("transformers")
def _transformers(model: str, **options: Any) -> Backend:
    from slmstack.backends.transformers_lm import TransformersBackend

    return TransformersBackend.from_ref(model, **options)


@runtimes.register("openai")
def _openai(model: str, **options: Any) -> Backend:
    from slmstack.backends.openai_compat import OpenAICompatBackend

    backend: Backend = OpenAICompatBackend(model=model, **options)
    return backend
