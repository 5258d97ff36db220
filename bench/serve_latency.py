"""Single-request latency of a classifier skill: in process, and over HTTP on loopback.

Trains a ``TextClassifier(strategy="head")`` on MiniLM on a few dozen intents, then times
200 sequential one-text requests three ways: ``skill.predict([text])`` in this process,
and ``POST /v1/skills/intent/predict`` to ``slmstack serve`` (uvicorn, 1 worker) with the
default ``batching.max_wait_ms`` (2 ms) and with 0 ms. The three are interleaved request by
request, so that each sees the same load from the rest of the machine. The client is one
keep-alive ``httpx.Client`` per server; each server is a separate process, as in
production. Torch threads: ``$TORCH_THREADS`` (1 by default) here and in the servers.

    flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python bench/serve_latency.py
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures import TRAIN
from slmstack import TextClassifier

N = 200
TEXTS = ["where is my new card", "I want a refund", "how do I reset my password", "hello"]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(pct(ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(folder: Path, max_wait_ms: float, threads: int) -> tuple[subprocess.Popen, str]:
    config = folder / f"serve-{max_wait_ms:g}.yaml"
    config.write_text(
        f"skills: {{intent: {folder / 'intent'}}}\n"
        f"batching: {{max_wait_ms: {max_wait_ms}}}\nthreads: {{torch: {threads}}}\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from slmstack.cli.app import main; main()", "serve",
         str(config), "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(client: httpx.Client) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{client.base_url} did not get ready")


def main() -> None:
    import torch

    threads = int(os.environ.get("TORCH_THREADS", "1"))
    torch.set_num_threads(threads)
    folder = Path(tempfile.mkdtemp(prefix="serve-latency-"))
    TextClassifier(strategy="head").fit(TRAIN).save(folder / "intent")
    from slmstack.skills.base import load

    skill = load(folder / "intent")
    servers = {f"http_max_wait_{w:g}ms": start_server(folder, w, threads) for w in (2.0, 0.0)}
    clients = {name: httpx.Client(base_url=url, timeout=30) for name, (_, url) in servers.items()}
    try:
        for client in clients.values():
            wait_ready(client)
        ms: dict[str, list[float]] = {"in_process": [], **{name: [] for name in clients}}
        # Interleaved, so that every way sees the same load from the rest of the machine.
        for i in range(N + 20):
            text = TEXTS[i % 4]
            start = time.perf_counter()
            skill.predict([text])
            took = {"in_process": (time.perf_counter() - start) * 1000}
            for name, client in clients.items():
                start = time.perf_counter()
                client.post("/v1/skills/intent/predict", json={"text": text}).raise_for_status()
                took[name] = (time.perf_counter() - start) * 1000
            if i >= 20:  # after a warm-up
                for name, value in took.items():
                    ms[name].append(value)
    finally:
        for client in clients.values():
            client.close()
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    results: dict[str, object] = {name: summary(values) for name, values in ms.items()}
    results.update(requests=N, torch_threads=threads, cores=len(os.sched_getaffinity(0)))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
