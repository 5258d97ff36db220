"""Single-request latency of a classifier skill: in process, and over HTTP on loopback.

Trains a ``TextClassifier(strategy="head")`` on MiniLM on a few dozen intents, exports it
to ONNX int8 (``slmstack export --int8``), then times 200 sequential one-text requests for
each runtime (torch, int8): ``skill.predict([text])`` in this process, and ``POST
/v1/skills/intent/predict`` to ``slmstack serve`` (uvicorn, 1 worker) with the default
``batching.max_wait_ms`` (2 ms) and with 0 ms. All ways are interleaved request by
request, so that each sees the same load from the rest of the machine. The client is one
keep-alive ``httpx.Client`` per server; each server is a separate process, as in
production. Model threads: ``$TORCH_THREADS`` (1 by default) here and in the servers
(torch, and onnxruntime's intra-op threads).

    flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python bench/serve_latency.py [--write-results]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
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


def start_server(
    folder: Path, skill: str, max_wait_ms: float, threads: int
) -> tuple[subprocess.Popen, str]:
    config = folder / f"serve-{skill}-{max_wait_ms:g}.yaml"
    config.write_text(
        f"skills: {{intent: {folder / skill}}}\n"
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
    os.environ["SLMSTACK_ONNX_THREADS"] = str(threads)
    folder = Path(tempfile.mkdtemp(prefix="serve-latency-"))
    clf = TextClassifier(strategy="head", precision="auto").fit(TRAIN)
    clf.save(folder / "torch")
    from slmstack.export import export_classifier
    from slmstack.skills.base import load

    export_classifier(clf, folder / "int8", TRAIN, int8=True)
    skills = {kind: load(folder / kind) for kind in ("torch", "int8")}
    servers = {f"{kind}_http_max_wait_{w:g}ms": start_server(folder, kind, w, threads)
               for kind in skills for w in (2.0, 0.0)}  # fmt: skip
    clients = {name: httpx.Client(base_url=url, timeout=30) for name, (_, url) in servers.items()}
    try:
        for client in clients.values():
            wait_ready(client)
        ms: dict[str, list[float]] = {f"{kind}_in_process": [] for kind in skills}
        ms.update({name: [] for name in clients})
        # Interleaved, so that every way sees the same load from the rest of the machine.
        for i in range(N + 20):
            text = TEXTS[i % 4]
            took = {}
            for kind, skill in skills.items():
                start = time.perf_counter()
                skill.predict([text])
                took[f"{kind}_in_process"] = (time.perf_counter() - start) * 1000
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
    for kind in skills:
        base = ms[f"{kind}_in_process"]
        http = ms[f"{kind}_http_max_wait_2ms"]
        results[f"{kind}_http_overhead_p50_ms"] = round(
            statistics.median(http) - statistics.median(base), 3
        )
    from _machine import machine

    results.update(requests=N, model_threads=threads, cores=len(os.sched_getaffinity(0)),
                   torch_precision=clf.precision, machine=machine(),
                   command="flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python "
                           "bench/serve_latency.py --write-results")  # fmt: skip
    print(json.dumps(results, indent=2))
    if "--write-results" in sys.argv:
        out = Path(__file__).parent / "results" / "serve_latency.json"
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
