"""Any OpenAI-compatible chat API (hosted APIs, vLLM, Ollama, llama.cpp server) over httpx.

Nothing here is used unless a caller builds it explicitly with a ``base_url``: there
is no default endpoint, so slmstack never calls a paid API on its own. The API key is
read from an environment variable (``OPENAI_API_KEY`` unless ``api_key_env`` says
otherwise); tests inject ``httpx.MockTransport`` through ``transport``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from slmstack.backends.base import Backend, Completion, CompletionRequest
from slmstack.errors import BackendError, ConfigError, MissingDependencyError
from slmstack.types import Usage

_MAX_BODY_IN_ERROR = 300


class OpenAICompatBackend(Backend):
    """Chat completions from ``{base_url}/chat/completions``.

    Args:
        model: the remote model name (``"gpt-4o-mini"``, ``"qwen2.5:0.5b"``...).
        base_url: API root, for example ``"https://api.openai.com/v1"`` or
            ``"http://localhost:8080/v1"``. Required: there is no default.
        api_key_env: environment variable holding the key; ``None`` sends no key
            (local servers). A named variable that is unset is an error.
        timeout_s: per-request timeout.
        transport: an ``httpx.BaseTransport`` (tests pass ``httpx.MockTransport``).

    Example:
        >>> llm = OpenAICompatBackend("gpt-4o-mini", base_url="https://api.openai.com/v1")
        ... # doctest: +SKIP
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        transport: Any = None,
    ):
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError("httpx", "serve", "the OpenAI-compatible backend") from exc
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"OpenAICompatBackend needs an explicit base_url starting with http:// or "
                f"https://, got {base_url!r}. slmstack never picks a remote API by default."
            )
        headers = {"Content-Type": "application/json"}
        if api_key_env is not None:
            key = os.environ.get(api_key_env)
            if not key:
                raise ConfigError(
                    f"the API key variable {api_key_env} is not set. Export it, or pass "
                    "api_key_env=None for a local server that needs no key."
                )
            headers["Authorization"] = f"Bearer {key}"
        self.name = model
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport
        )

    def _body(self, request: CompletionRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.name,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": dict(request.json_schema)},
            }
        return body

    def complete(self, request: CompletionRequest) -> Completion:
        """POST one chat completion; HTTP, network and format errors become BackendError."""
        import httpx

        url = f"{self.base_url}/chat/completions"
        start = time.perf_counter()
        try:
            response = self._client.post("/chat/completions", json=self._body(request))
        except httpx.TimeoutException as exc:
            raise BackendError(f"{url} timed out ({exc}); raise timeout_s or retry") from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"{url} could not be reached: {exc}") from exc
        latency = (time.perf_counter() - start) * 1000
        if response.status_code >= 400:
            hint = {
                401: "check the API key",
                403: "check the API key's permissions",
                404: f"check base_url and the model name {self.name!r}",
                429: "rate limited; slow down or retry later",
            }.get(response.status_code, "see the response body")
            raise BackendError(
                f"{url} answered HTTP {response.status_code} ({hint}): "
                f"{response.text[:_MAX_BODY_IN_ERROR]}"
            )
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            usage = data.get("usage") or {}
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            raise BackendError(
                f"{url} returned a body that is not an OpenAI chat completion ({exc!r}): "
                f"{response.text[:_MAX_BODY_IN_ERROR]}"
            ) from exc
        return Completion(
            text=text,
            model=str(data.get("model") or self.name),
            usage=Usage(
                input_tokens=int(usage.get("prompt_tokens", 0)),
                output_tokens=int(usage.get("completion_tokens", 0)),
                latency_ms=latency,
            ),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()
