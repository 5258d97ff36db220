"""Any OpenAI-compatible chat API (hosted APIs, vLLM, Ollama, llama.cpp's server), production-grade.

The official ``openai`` client does the HTTP, the authentication and the response types;
this module adds what a workflow leans on:

* **explicit endpoints only**: ``base_url`` has no default and every fallback names its
  own, so slmstack never calls a paid API the user did not name;
* **retries** on timeouts, connection errors, 408/409/429 and 5xx, with exponential
  back-off that honours ``Retry-After`` (:mod:`slmstack.backends.retry`). The client's
  own retries are off: its sleep cannot be injected and it cannot fail over;
* **fallbacks**: other endpoints (or models) tried in order when one is still failing
  after its retries; the :class:`~slmstack.backends.base.Completion` names the model and
  endpoint that answered and lists the failures before it. Errors that are the request's
  or the configuration's fault (400, 401, 403, 404, 422) are raised at once instead:
  another endpoint would only hide them;
* a **concurrency limit**: a semaphore shared by all threads that use the backend;
* **usage** from the response, else counted with the model's tokenizer (``tokenizer=``),
  else an error: never a silent zero. ``count_tokens`` uses the same tokenizer;
* **JSON schema** output (``response_format``) and **log-probabilities**;
* **streaming** (:meth:`OpenAICompatBackend.stream`), retried and failed over until the
  first piece arrives.

The API key is read from an environment variable (``OPENAI_API_KEY`` unless
``api_key_env`` says otherwise; ``None`` for local servers sends no key at all). Tests
inject an ``httpx2`` transport (the ``openai`` client's HTTP library) through ``transport``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from functools import partial
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from slmstack.backends.base import Backend, Completion, CompletionRequest
from slmstack.backends.openai_response import (
    MAX_BODY_IN_ERROR,
    EndpointDown,
    all_failed,
    log_failover,
    parse_completion,
    shown_url,
    stream_pieces,
)
from slmstack.backends.retry import RETRYABLE_STATUS, RetryPolicy, retry_after_s
from slmstack.backends.token_count import TokenCounter, load_token_counter
from slmstack.errors import BackendError, ConfigError, MissingDependencyError

_T = TypeVar("_T")
_FALLBACK_KEYS = frozenset({
    "model", "base_url", "api_key_env", "timeout_s", "retries", "backoff_s", "max_wait_s",
    "max_concurrency", "tokenizer", "json_format",
})  # fmt: skip
_HINTS = {
    400: "the server refused the request; it may not support an option that was sent "
    "(response_format: try json_format='json_object' for llama-cpp-python's server; "
    "logprobs; seed)",
    401: "check the API key in {key}",
    403: "check the API key's permissions",
    404: "check base_url and the model name {model!r}",
    422: "the server refused the request's fields (for llama-cpp-python's server, "
    "use json_format='json_object')",
}


def _import_openai() -> Any:
    try:
        import httpx2
        import openai
    except ImportError as exc:
        raise MissingDependencyError("openai", "llm", "the OpenAI-compatible backend") from exc
    return openai, httpx2


class OpenAICompatBackend(Backend):
    """Chat completions from ``{base_url}/chat/completions``, with retries and fallbacks.

    Args:
        model: the remote model name (``"gpt-4o-mini"``, ``"qwen2.5:0.5b"``...).
        base_url: API root, for example ``"https://api.openai.com/v1"`` or
            ``"http://localhost:8080/v1"``. Required: there is no default.
        api_key_env: environment variable holding the key; ``None`` sends no key
            (local servers). A named variable that is unset is an error.
        timeout_s: limit of one attempt.
        retries: further attempts on timeouts, connection errors, 408/409/429 and 5xx.
        backoff_s: wait before the first retry, doubled each time (``Retry-After`` wins).
        max_wait_s: longest single wait; a server asking for more is not waited for.
        fallbacks: endpoints tried in order when this one fails after its retries; each
            a mapping with its own ``model`` and ``base_url`` and any of ``api_key_env``
            (else this one's on this host; required on another), ``timeout_s``, ``retries``,
            ``backoff_s``, ``max_wait_s``, ``max_concurrency``, ``tokenizer``, ``json_format``.
        max_concurrency: most requests in flight at once, over all threads; ``None``: no
            limit.
        tokenizer: the served model's tokenizer, for :meth:`count_tokens` and for usage a
            server does not report: a GGUF alias or file (``"smollm2"``), a Hugging Face
            tokenizer folder or cached hub id, or a function ``str -> int``.
        json_format: how a ``json_schema`` request is sent: ``"json_schema"`` (OpenAI,
            vLLM, Ollama, llama.cpp's ``llama-server``) or ``"json_object"`` (with a
            ``schema`` field: llama-cpp-python's ``llama_cpp.server``).
        transport: an ``httpx2.BaseTransport`` (tests pass ``httpx2.MockTransport``);
            shared with the fallbacks.
        sleep, clock: injected ``time.sleep`` and ``time.time`` (tests); shared too.

    Example:
        >>> llm = OpenAICompatBackend(
        ...     "qwen2.5-coder-1.5b", base_url="http://127.0.0.1:8080/v1", api_key_env=None,
        ...     fallbacks=[{"model": "gpt-4o-mini", "base_url": "https://api.openai.com/v1"}],
        ... )  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        max_wait_s: float = 60.0,
        fallbacks: Sequence[Mapping[str, Any]] = (),
        max_concurrency: int | None = None,
        tokenizer: str | TokenCounter | None = None,
        json_format: Literal["json_schema", "json_object"] = "json_schema",
        transport: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        openai, httpx2 = _import_openai()
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"OpenAICompatBackend needs an explicit base_url starting with http:// or "
                f"https://, got {base_url!r}. slmstack never picks a remote API by default."
            )
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"OpenAICompatBackend needs the remote model's name, got {model!r}")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0:
            raise ConfigError(f"timeout_s must be a number of seconds > 0, got {timeout_s!r}")
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise ConfigError(
                f"max_concurrency must be None or an int >= 1, got {max_concurrency!r}"
            )
        if isinstance(fallbacks, str | Mapping):
            raise ConfigError(
                f"fallbacks must be a list of {{model, base_url, ...}} mappings, got {fallbacks!r}"
            )
        if json_format not in ("json_schema", "json_object"):
            raise ConfigError(
                f"json_format must be 'json_schema' or 'json_object', got {json_format!r}"
            )
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout_s = float(timeout_s)
        self.policy = RetryPolicy(retries=retries, backoff_s=backoff_s, max_wait_s=max_wait_s)
        self.max_concurrency = max_concurrency
        self.json_format = json_format
        self._sleep, self._clock = sleep, clock
        self._slots: AbstractContextManager[Any] = (
            nullcontext()
            if max_concurrency is None
            else threading.BoundedSemaphore(max_concurrency)
        )
        self._openai, self._httpx = openai, httpx2
        self._count: TokenCounter | None = (
            load_token_counter(tokenizer) if isinstance(tokenizer, str) else tokenizer
        )
        if api_key_env is None:
            key, self._headers = "unused", {"Authorization": openai.Omit()}  # send no key
        else:
            key, self._headers = os.environ.get(api_key_env, ""), {}
            if not key:
                raise ConfigError(
                    f"the API key variable {api_key_env} is not set (for {self.where}). Export "
                    "it, or pass api_key_env=None for a local server that needs no key."
                )
        self._closed = False
        self._client = openai.OpenAI(
            api_key=key,
            base_url=self.base_url,
            timeout=self.timeout_s,
            max_retries=0,  # retried here: injectable sleep, Retry-After dates, fallbacks
            http_client=httpx2.Client(transport=transport, timeout=self.timeout_s),
        )
        self.fallbacks = [
            self._fallback(i, spec, transport=transport) for i, spec in enumerate(fallbacks)
        ]

    def _fallback(self, i: int, spec: Mapping[str, Any], *, transport: Any) -> OpenAICompatBackend:
        where = f"fallbacks[{i}]"
        if not isinstance(spec, Mapping):
            raise ConfigError(
                f"{where} must be a mapping with 'model' and 'base_url', got {spec!r}"
            )
        missing = [k for k in ("model", "base_url") if not spec.get(k)]
        unknown = sorted(set(spec) - _FALLBACK_KEYS)
        if missing or unknown:
            problem = f"lacks {', '.join(missing)}" if missing else f"has unknown {unknown}"
            raise ConfigError(
                f"{where} {problem}: every fallback names its own model and base_url, and "
                f"may set {', '.join(sorted(_FALLBACK_KEYS - {'model', 'base_url'}))}."
            )
        options = dict(spec)
        host = urlsplit(str(options["base_url"])).hostname
        if "api_key_env" not in options and host == urlsplit(self.base_url).hostname:
            options["api_key_env"] = self.api_key_env  # the same host: the same key
        elif "api_key_env" not in options and host != "api.openai.com":  # no key leaks away
            raise ConfigError(f"{where} is on another host than {self.where} and names no "
                              "api_key_env, so it would be sent OPENAI_API_KEY. Set its "
                              "api_key_env to the variable holding its own key, or to null "
                              "for a server that needs no key.")  # fmt: skip
        return OpenAICompatBackend(
            options.pop("model"), **options, transport=transport, sleep=self._sleep,
            clock=self._clock,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"OpenAICompatBackend({self.name!r}, base_url={shown_url(self.base_url)!r})"

    @property
    def where(self) -> str:
        """``"model at base_url"`` (credentials masked), as errors and logs name it."""
        return f"{self.name} at {shown_url(self.base_url)}"

    # ------------------------------------------------------------------ tokens
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with the tokenizer given as ``tokenizer=`` (no special tokens)."""
        if self._count is None:
            raise BackendError(
                f"OpenAICompatBackend({self.name!r}) cannot count tokens: the API has no "
                "tokenizer endpoint to rely on, and none was named. Pass the served model's "
                "tokenizer, for example tokenizer='smollm2' (a GGUF alias or file, or a "
                "Hugging Face tokenizer folder), in the backend options."
            )
        return int(self._count(text))

    # ------------------------------------------------------------------ completing
    def complete(self, request: CompletionRequest) -> Completion:
        """One chat completion, from this endpoint or, when it is down, the next fallback."""
        start = time.perf_counter()
        failures: list[str] = []
        last: EndpointDown | None = None
        for endpoint in (self, *self.fallbacks):
            try:
                done = endpoint._complete_here(request)
            except EndpointDown as exc:
                failures.append(str(exc))
                last = exc
                continue
            if failures:
                log_failover(endpoint.where, failures)
            usage = replace(done.usage, latency_ms=(time.perf_counter() - start) * 1000)
            return replace(done, usage=usage, failed_over=tuple(failures))
        raise all_failed(failures) from last

    def stream(self, request: CompletionRequest) -> Iterator[str]:
        """One chat completion, streamed as the server generates it (``stream=True``).

        Retries and fallbacks apply until the server starts answering; a failure after
        the first piece is raised as a :class:`BackendError` (retrying would repeat text
        already streamed). The endpoint's concurrency slot is held until the iterator is
        exhausted or closed.
        """
        failures: list[str] = []
        last: EndpointDown | None = None
        for endpoint in (self, *self.fallbacks):
            params = {**endpoint._params(request), "stream": True}
            try:
                events = endpoint._retrying(partial(endpoint._open_stream, params), params)
            except EndpointDown as exc:
                failures.append(str(exc))
                last = exc
                continue
            if failures:
                log_failover(endpoint.where, failures)
            try:
                errors = (self._openai.APIError, self._httpx.HTTPError)
                yield from stream_pieces(events, endpoint.where, errors)
            finally:
                events.close()
                endpoint._slots.__exit__(None, None, None)
            return
        raise all_failed(failures) from last

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise BackendError(
                f"{self.where}: this backend was closed; call load_backend() again for a new one"
            )

    def _open_stream(self, params: dict[str, Any]) -> Any:
        """Open a stream and keep this endpoint's slot (released when the stream ends)."""
        self._refuse_if_closed()
        self._slots.__enter__()
        try:
            return self._client.chat.completions.create(**params)
        except BaseException:
            self._slots.__exit__(None, None, None)
            raise

    def _params(self, request: CompletionRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.name,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
            "extra_headers": self._headers,
        }
        if request.stop:
            params["stop"] = list(request.stop)
        if request.json_schema is not None:
            schema = dict(request.json_schema)
            params["response_format"] = (
                {"type": "json_object", "schema": schema}
                if self.json_format == "json_object"
                else {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
            )
        if request.logprobs is not None:
            params["logprobs"] = True
            params["top_logprobs"] = request.logprobs
        return params

    def _complete_here(self, request: CompletionRequest) -> Completion:
        """Ask this endpoint alone, with retries; :class:`EndpointDown` when it stays down."""
        self._refuse_if_closed()
        params = self._params(request)
        raw = self._retrying(partial(self._create_raw, params), params)
        return parse_completion(raw, request, model=self.name, endpoint=self.base_url,
                                count=self._count)  # fmt: skip

    def _create_raw(self, params: dict[str, Any]) -> Any:
        with self._slots:
            return self._client.chat.completions.with_raw_response.create(**params)

    def _retrying(self, call: Callable[[], _T], params: dict[str, Any]) -> _T:
        """``call()`` with retries; :class:`EndpointDown` when this endpoint stays down."""
        openai = self._openai
        url = f"{self.base_url}/chat/completions"
        attempts = self.policy.retries + 1
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                return call()
            except openai.APITimeoutError as exc:
                problem = f"timed out after {self.timeout_s:g} s; raise timeout_s"
                cause: Exception = exc
            except openai.APIConnectionError as exc:
                problem = (
                    f"could not be reached ({exc.__cause__ or exc}); check that the server "
                    "is running at base_url"
                )
                cause = exc
            except openai.APIStatusError as exc:
                status, body = exc.status_code, exc.response.text[:MAX_BODY_IN_ERROR]
                if status not in RETRYABLE_STATUS:
                    hint = _HINTS.get(status, "see the response body")
                    hint = hint.format(key=self.api_key_env, model=self.name)
                    raise BackendError(f"{url} answered HTTP {status} ({hint}): {body}") from exc
                problem = f"answered HTTP {status}: {body}"
                if "json_object" in body and "response_format" in params:
                    problem += " (this server wants json_format='json_object')"
                retry_after = retry_after_s(exc.response.headers, self._clock())
                cause = exc
            if attempt + 1 == attempts:
                break
            wait = self.policy.wait_s(attempt, retry_after)
            if wait > self.policy.max_wait_s:
                problem += (
                    f"; it asked to wait {wait:g} s (Retry-After), more than "
                    f"max_wait_s={self.policy.max_wait_s:g}: raise max_wait_s to wait that long"
                )
                attempts = attempt + 1
                break
            self._sleep(wait)
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        raise EndpointDown(f"{self.where} {problem} ({tries})") from cause

    def close(self) -> None:
        """Close the HTTP connection pools (this endpoint's and the fallbacks').

        A closed backend is no longer shared: :func:`~slmstack.backends.load_backend`
        builds a fresh one next time, and this one refuses further calls.
        """
        from slmstack.backends.factory import forget

        forget(self)
        self._closed = True
        self._client.close()
        for fallback in self.fallbacks:
            fallback.close()
