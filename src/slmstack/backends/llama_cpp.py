"""llama.cpp through llama-cpp-python: the fast local runtime for GGUF generators.

JSON-schema constrained output is compiled by llama.cpp into a grammar, so an
extraction prompt cannot return broken JSON; greedy decoding (``temperature=0``) is
reproducible; the shared prefix of successive prompts is cached automatically.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from slmstack.backends.base import Backend, Completion, CompletionRequest
from slmstack.errors import BackendError, ConfigError, MissingDependencyError
from slmstack.models.hashing import sha256_file
from slmstack.types import Usage

_OPEN: weakref.WeakSet[Any] = weakref.WeakSet()  # llama.cpp models not yet freed


def track(llm: Any) -> Any:
    """Register a ``llama_cpp.Llama`` to be freed at interpreter exit; returns it.

    A model still referenced at exit (a shared backend, a token counter) would otherwise
    be freed by ``Llama.__del__`` after the interpreter has torn ``llama_cpp``'s module
    globals down, which prints an ignored ``TypeError`` on every run.
    """
    _OPEN.add(llm)
    return llm


def _free(models: Iterable[Any]) -> None:
    """Close each model; a failure is skipped so that the rest are still freed."""
    for llm in list(models):
        with contextlib.suppress(Exception):  # exiting anyway
            llm.close()


@atexit.register
def _free_open_models() -> None:
    _free(_OPEN)


def _import_llama() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingDependencyError(
            "llama-cpp-python",
            "llama",
            'the llama.cpp backend (build it with CMAKE_ARGS="-DGGML_NATIVE=OFF" on CPUs with AMX)',
        ) from exc
    return llama_cpp


class LlamaCppBackend(Backend):
    """A GGUF model run by llama.cpp.

    Args:
        model_path: the ``.gguf`` file (use :func:`slmstack.backends.load_backend` to
            pass an alias such as ``"smollm2"`` instead).
        name: model name reported in each :class:`Completion`.
        n_ctx: context window in tokens (prompt plus output).
        n_threads: CPU threads; ``None`` lets llama.cpp choose.
        reuse_prompt_cache: keep llama.cpp's KV cache of the previous prompt and evaluate
            only the new suffix. Faster with a long shared system prompt, but greedy output
            is then not exactly reproducible: a prefix evaluated in a different batch shape
            gives slightly different numbers, enough to flip a near-tie. Off by default.

    Example:
        >>> from slmstack.backends import ChatMessage, CompletionRequest, load_backend
        >>> llm = load_backend("smollm2")  # doctest: +SKIP
        >>> llm.complete(CompletionRequest([ChatMessage("user", "Say hi")])).text  # doctest: +SKIP
        'Hi!'
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        name: str | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        reuse_prompt_cache: bool = False,
    ):
        path = Path(model_path)
        if not path.is_file() or path.suffix != ".gguf":
            raise ConfigError(
                f"LlamaCppBackend needs a .gguf file, got {str(path)!r}. Pass a GGUF path or "
                "use load_backend('smollm2') for a known alias."
            )
        if n_ctx < 16:
            raise ConfigError(f"n_ctx must be at least 16 tokens, got {n_ctx}")
        llama_cpp = _import_llama()
        self.name = name or path.stem
        self.model_path = path
        self.n_ctx = n_ctx
        self.reuse_prompt_cache = reuse_prompt_cache
        self.model_sha256 = sha256_file(path)  # memoised; resolve() already hashed aliases
        start = time.perf_counter()
        try:
            self._llm = track(
                llama_cpp.Llama(
                    model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False
                )
            )
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp could not load {path}: {exc}") from exc
        self.load_seconds = time.perf_counter() - start
        # One llama.cpp context serves one call at a time; parallel workflow steps that
        # share this backend queue here instead of corrupting its KV cache.
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without the BOS token."""
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _kwargs(self, request: CompletionRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stop": list(request.stop) or None,
            "seed": request.seed,
        }
        if request.json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
        return kwargs

    def _failed(self, exc: ValueError, request: CompletionRequest) -> BackendError:
        # llama.cpp raises ValueError for prompts beyond the window and for schemas it
        # cannot compile to a grammar.
        return BackendError(
            f"llama.cpp failed on {self.name}: {exc}. Shorten the prompt, lower "
            f"max_tokens ({request.max_tokens}) or raise n_ctx ({self.n_ctx})."
        )

    def complete(self, request: CompletionRequest) -> Completion:
        """Generate one chat completion."""
        kwargs = self._kwargs(request)
        start = time.perf_counter()
        with self._lock:
            if not self.reuse_prompt_cache:
                self._llm.reset()  # evaluate the whole prompt: same input, same output
            try:
                out = self._llm.create_chat_completion(**kwargs)
            except ValueError as exc:
                raise self._failed(exc, request) from exc
        latency = (time.perf_counter() - start) * 1000
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Completion(
            text=choice["message"]["content"] or "",
            model=self.name,
            usage=Usage(
                input_tokens=int(usage.get("prompt_tokens", 0)),
                output_tokens=int(usage.get("completion_tokens", 0)),
                latency_ms=latency,
            ),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        )

    def stream(self, request: CompletionRequest) -> Iterator[str]:
        """Generate one chat completion token by token.

        The model is held (other calls wait) until the iterator is exhausted or closed;
        closing it stops the generation.
        """
        kwargs = self._kwargs(request)
        with self._lock:
            if not self.reuse_prompt_cache:
                self._llm.reset()
            try:
                chunks = self._llm.create_chat_completion(**kwargs, stream=True)
                try:
                    for chunk in chunks:
                        piece = chunk["choices"][0]["delta"].get("content")
                        if piece:
                            yield piece
                finally:
                    chunks.close()  # stops llama.cpp's generation loop when closed early
            except ValueError as exc:
                raise self._failed(exc, request) from exc
