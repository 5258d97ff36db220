"""A local LLM server process for the benchmarks: a free port, readiness, CPU time, stop.

``bench/llm_vs_slm.py``, ``bench/distill.py``, ``bench/contractnli.py`` and
``bench/migration.py`` each start ``python -m llama_cpp.server`` in a subprocess; these are
the pieces they share. (``tests/llm_server.py`` has its own copy: tests do not import
benchmarks.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(
    url: str, server: subprocess.Popen[bytes], log: Path, timeout_s: float = 600.0
) -> None:
    """Return once ``{url}/models`` answers; exit naming ``log`` if the server died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                json.load(response)
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if server.poll() is not None:
            raise SystemExit(f"the LLM server exited with code {server.returncode}; see {log}")
        time.sleep(0.5)
    raise SystemExit(f"the LLM server at {url} did not answer within {timeout_s:g} s; see {log}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(server: subprocess.Popen[bytes]) -> None:
    """Terminate ``server``; kill it if it has not exited within 30 s."""
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
