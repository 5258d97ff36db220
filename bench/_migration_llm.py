"""The "LLM" of ``bench/migration.py``: a local llama.cpp server behind a caching shim.

- :class:`LLMServer` starts ``python -m llama_cpp.server`` (Qwen2.5-Coder-1.5B-Instruct
  Q4_K_M GGUF, 2 threads, ``nice -n 10``) with the RAM prompt cache (``--cache true
  --cache_type ram``, ``--cache_size`` see :data:`CACHE_BYTES`): the two tasks' fixed
  prefixes (the 77 labels; the extraction instructions) stay cached as saved model
  states, so an interleaved call only evaluates its own variable part.
- :class:`Shim` is a tiny OpenAI-compatible ASGI app between the proxy and that server. It
  stores each upstream answer by the SHA-256 of the request body (canonical JSON) in a
  JSONL file, so re-running the benchmark does not pay the LLM time again, and counts
  live against cached answers per phase. It plays the provider: the app asks for
  ``gpt-4``, the shim asks the local model, and echoes the requested model back. The
  llama server starts only on the first uncached request (a run that is all cached never
  loads the model).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from _llm_process import free_port, stop, wait_ready

ALIAS = "qwen2.5-1.5b"
# The RAM cache's budget counts only llama.cpp's state (about 13 MB for a banking prompt),
# but llama-cpp-python's LlamaState also copies the logits buffer (n_batch x 151,936 vocab
# x 4 B = 311 MB) with each saved state, uncounted: a "2 GiB" cache grew past 15 GB here
# and thrashed the machine. 100 MB by its count keeps about 7 states (about 2.2 GB real):
# plenty, since every banking state carries the 420-token label prefix and the receipts'
# fixed prefix is short (120 tokens) and cheap to recompute when evicted.
CACHE_BYTES = 100_000_000


def body_key(body: dict[str, Any]) -> str:
    """The cache key of a request: SHA-256 of its canonical JSON."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class LLMServer:
    """``python -m llama_cpp.server`` in a subprocess (niced, logging to ``log``)."""

    def __init__(self, log: Path, n_ctx: int = 4096, threads: int = 2):
        self.log_path, self.n_ctx, self.threads = log, n_ctx, threads
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.command = ""

    def start(self) -> str:
        from slmstack.models import resolve

        if self.proc is not None:
            return self.url
        gguf = resolve(ALIAS).weights
        port = free_port()
        cmd = ["nice", "-n", "10", sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
               "--model_alias", ALIAS, "--n_ctx", str(self.n_ctx), "--n_threads",
               str(self.threads), "--cache", "true", "--cache_type", "ram", "--cache_size",
               str(CACHE_BYTES), "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        self.command = " ".join(cmd)
        print(self.command, flush=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.url = f"http://127.0.0.1:{port}/v1"
        wait_ready(self.url, self.proc, self.log_path, timeout_s=300)
        return self.url

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


class Shim:
    """OpenAI-compatible caching front of :class:`LLMServer` (an ASGI app)."""

    def __init__(self, cache_file: Path, server: LLMServer, fake: Any = None):
        self.cache_file, self.server, self.fake = cache_file, server, fake
        self.cache: dict[str, dict[str, Any]] = {}
        if cache_file.exists():
            for line in cache_file.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.cache[rec["key"]] = rec
        self.phase = "-"
        self.counts: dict[str, Counter[str]] = {}
        self.calls: list[dict[str, Any]] = []  # (phase, key, live, ms, usage) of each answer
        self._lock = asyncio.Lock()

    async def _ask(self, sent: dict[str, Any], tries: int = 3) -> tuple[httpx.Response, float]:
        """POST to the llama server; restart it when it died under a call (logged)."""
        for attempt in range(tries):
            url = await asyncio.to_thread(self.server.start)
            start = time.perf_counter()
            try:
                async with httpx.AsyncClient(timeout=1800) as client:
                    resp = await client.post(f"{url}/chat/completions", json=sent)
                return resp, (time.perf_counter() - start) * 1000
            except httpx.TransportError as exc:
                rc = self.server.proc.poll() if self.server.proc else None
                print(f"llama server lost ({type(exc).__name__}, exit code {rc}); "
                      f"restarting (try {attempt + 1} of {tries})", flush=True)  # fmt: skip
                self.count("-", "server_restarts")
                self.server.stop()
        raise SystemExit(f"the llama server failed {tries} times; see {self.server.log_path}")

    def count(self, phase: str, what: str, n: int = 1) -> None:
        self.counts.setdefault(phase, Counter())[what] += n

    async def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The upstream answer to ``body``: cached, or asked live (one at a time)."""
        key = body_key(body)
        phase = self.phase
        async with self._lock:  # one live call at a time: llama.cpp serves one anyway
            rec = self.cache.get(key)
            live = rec is None
            if rec is None and self.fake is not None:  # a dry run of the harness: no model
                rec = {"key": key, "response": self.fake(body), "live_ms": 0.0, "at": time.time()}
                self.cache[key] = rec
            if rec is None:
                resp, ms = await self._ask({**body, "model": ALIAS})
                if resp.status_code != 200:
                    self.count(phase, "upstream_errors")
                    return resp.status_code, {"error": {"message": resp.text[:500]}}
                rec = {"key": key, "response": resp.json(), "live_ms": ms, "at": time.time()}
                self.cache[key] = rec
                with self.cache_file.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        response = {**rec["response"], "model": body.get("model", ALIAS)}
        usage = response.get("usage") or {}
        self.count(phase, "live" if live else "cached")
        self.count(phase, "tokens_in", int(usage.get("prompt_tokens") or 0))
        self.count(phase, "tokens_out", int(usage.get("completion_tokens") or 0))
        self.calls.append({"phase": phase, "key": key, "live": live,
                           "ms": rec["live_ms"] if live else None, "usage": usage})  # fmt: skip
        return 200, response

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"].endswith("/models"):
            status, data = 200, {"object": "list", "data": [{"id": "gpt-4", "object": "model"}]}
        elif scope["path"].endswith("/chat/completions") and scope["method"] == "POST":
            body = json.loads(raw or b"{}")
            if body.get("stream"):
                status, data = 400, {"error": {"message": "the shim answers non-streamed calls"}}
            else:
                status, data = await self.answer(body)
        else:
            status, data = 404, {"error": {"message": f"no route {scope['path']}"}}
        payload = json.dumps(data).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": payload})

    def is_cached(self, body: dict[str, Any]) -> bool:
        return body_key(body) in self.cache


class ShimServer:
    """The shim on uvicorn in a background thread of this process."""

    def __init__(self, shim: Shim):
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(shim, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ShimServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise SystemExit("the caching shim did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
