"""Throughput at saturation: ``slmstack serve`` against the FastAPI app a user would write.

Both servers answer one short text per request with the same classifier: a
``TextClassifier(strategy="head")`` skill on MiniLM trained on ``tests/fixtures.py`` TRAIN,
served by ``slmstack serve`` (uvicorn, 1 worker, micro-batching at its defaults), against
``bench/serve_baseline_app.py``: FastAPI + sentence-transformers ``all-MiniLM-L6-v2`` (the
same local folder ``resolve("minilm")`` gives) + a scikit-learn ``LogisticRegression``
fitted on the same texts, one request at a time (uvicorn, 1 worker). A third server serves
the same skill exported with ``slmstack export --int8`` (onnxruntime, no torch in its
predictions). Each is a separate process on a free loopback port; model threads (torch, or
onnxruntime intra-op) are ``$TORCH_THREADS`` (1 by default) in all three.

The load generator is async httpx in this process (one client per 16 connections):
``$CONCURRENCY`` (64) requests in flight, ``$REQUESTS`` (2000) in all, texts taken from
TRAIN in turn. Rounds alternate between the servers (``$ROUNDS``, 3 each) so that both
see the same background load; the median round is reported. Batch sizes are read from the
slmstack server's ``/metrics`` (``slmstack_batch_size`` sum and count, per round); peak
RSS from each server's ``/proc/PID/status`` ``VmHWM`` at the end. Writes
``bench/results/serve.json``.

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
        SLMSTACK_PROGRESS=0 .venv/bin/python bench/serve.py
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from _machine import machine, scratch
from serve_latency import free_port, start_server, wait_ready
from slmstack import TextClassifier
from slmstack.models import resolve

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures import TRAIN

HERE = Path(__file__).resolve().parent
REQUESTS = int(os.environ.get("REQUESTS", "2000"))
CONCURRENCY = int(os.environ.get("CONCURRENCY", "64"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
TEXTS = [example.text for example in TRAIN]


def start_baseline(folder: Path, threads: int) -> tuple[subprocess.Popen, str]:
    """The baseline app under uvicorn, 1 worker (in-process: no supervisor), on loopback."""
    train = folder / "baseline-train.json"
    train.write_text(json.dumps([[e.text, e.label] for e in TRAIN]))
    env = dict(os.environ, BASELINE_TRAIN=str(train), TORCH_THREADS=str(threads),
               BASELINE_MODEL=str(resolve("minilm").path))  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "serve_baseline_app:app", "--app-dir", str(HERE),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--log-level", "warning",
         "--no-access-log"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


async def load(url: str, path: str, body_key: str) -> dict[str, float]:
    """``REQUESTS`` posts, ``CONCURRENCY`` in flight; requests/s and the failures.

    The connections are spread over one ``AsyncClient`` per 16 in flight: a single httpx
    client with 64 connections was the bottleneck here (about 70-90 req/s whatever the
    server), so that the slmstack server saw few requests at a time and batched ~2.
    """
    per_client = 16
    clients = [
        httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(
            max_connections=per_client, max_keepalive_connections=per_client))
        for _ in range(-(-CONCURRENCY // per_client))
    ]  # fmt: skip
    next_i = 0
    failed = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_i, failed
        while next_i < REQUESTS:
            text = TEXTS[next_i % len(TEXTS)]
            next_i += 1
            try:
                response = await client.post(path, json={body_key: text})
                failed += response.status_code != 200
            except httpx.TransportError:  # counted, not hidden: reported as failed
                failed += 1

    try:
        start = time.perf_counter()
        await asyncio.gather(*(worker(clients[w // per_client]) for w in range(CONCURRENCY)))
        seconds = time.perf_counter() - start
    finally:
        for client in clients:
            await client.aclose()
    return {"rps": REQUESTS / seconds, "seconds": seconds, "failed": failed}


def batch_totals(url: str) -> tuple[float, float]:
    """Sum and count of ``slmstack_batch_size`` over all targets, from ``/metrics``."""
    page = httpx.get(f"{url}/metrics", timeout=30).text
    sums = re.findall(r"^slmstack_batch_size_sum\{[^}]*\} (\S+)$", page, re.M)
    counts = re.findall(r"^slmstack_batch_size_count\{[^}]*\} (\S+)$", page, re.M)
    return sum(map(float, sums)), sum(map(float, counts))


def peak_rss_mib(pid: int) -> float:
    """``VmHWM`` (peak resident set) of a process, in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    if match is None:
        raise SystemExit(f"no VmHWM in /proc/{pid}/status")
    return int(match.group(1)) / 1024


def main() -> None:
    threads = int(os.environ.get("TORCH_THREADS", "1"))
    folder = scratch("serve-bench-")
    clf = TextClassifier(strategy="head", precision="auto").fit(TRAIN)
    clf.save(folder / "torch")
    from slmstack.export import export_classifier

    export_classifier(clf, folder / "int8", TRAIN, int8=True)  # gate: on TRAIN (tiny)
    os.environ["SLMSTACK_ONNX_THREADS"] = str(threads)  # inherited by the int8 server
    servers = {
        "slmstack": start_server(folder, "torch", 2.0, threads),
        "slmstack-int8": start_server(folder, "int8", 2.0, threads),
        "baseline": start_baseline(folder, threads),
    }
    route = "/v1/skills/intent/predict"
    routes = {"slmstack": route, "slmstack-int8": route, "baseline": "/predict"}
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    try:
        for name, (_, url) in servers.items():
            with httpx.Client(base_url=url, timeout=30) as client:
                wait_ready(client)
                for text in TEXTS:  # warm-up
                    client.post(routes[name], json={"text": text}).raise_for_status()
        for i in range(ROUNDS):
            for name, (_, url) in servers.items():
                ours = name.startswith("slmstack")
                before = batch_totals(url) if ours else (0.0, 0.0)
                result = asyncio.run(load(url, routes[name], "text"))
                if ours:
                    after = batch_totals(url)
                    items, batches = after[0] - before[0], after[1] - before[1]
                    result["mean_batch_size"] = items / batches if batches else 0.0
                    result["batches"] = batches
                rounds[name].append(result)
                if servers[name][0].poll() is not None:
                    raise SystemExit(f"the {name} server died in round {i + 1}")
                print(f"round {i + 1} {name}: {result['rps']:.1f} req/s", flush=True)
        rss = {name: peak_rss_mib(proc.pid) for name, (proc, _) in servers.items()}
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    median = {name: statistics.median(r["rps"] for r in rs) for name, rs in rounds.items()}
    results = {
        "machine": machine(),
        "torch_threads": threads,
        "requests_per_round": REQUESTS,
        "concurrency": CONCURRENCY,
        "rounds": rounds,
        "median_rps": median,
        "speedup": median["slmstack"] / median["baseline"],
        "speedup_int8": median["slmstack-int8"] / median["baseline"],
        "torch_precision": clf.precision,
        "peak_rss_mib": rss,
        "target": "slmstack throughput >= 3x the baseline",
        "command": f"flock /tmp/slmstack-cpu.lock nice -n 5 env TORCH_THREADS={threads} "
        f"CONCURRENCY={CONCURRENCY} REQUESTS={REQUESTS} ROUNDS={ROUNDS} .venv/bin/python "
        "bench/serve.py",
    }
    out = HERE / "results" / "serve.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    batch = {name: statistics.median(r["mean_batch_size"] for r in rounds[name])
             for name in servers if name.startswith("slmstack")}  # fmt: skip
    print(f"\n{results['machine']['model_name']}; torch threads {threads} on both sides; "
          f"{REQUESTS} requests x {ROUNDS} rounds, {CONCURRENCY} in flight\n")  # fmt: skip
    print("| server | req/s (median) | rounds | mean batch | peak RSS MiB | failed |")
    print("|---|---|---|---|---|---|")
    for name in servers:
        rs = ", ".join(f"{r['rps']:.0f}" for r in rounds[name])
        mb = f"{batch[name]:.1f}" if name in batch else "1 (none)"
        failed = int(sum(r["failed"] for r in rounds[name]))
        print(f"| {name} | {median[name]:.1f} | {rs} | {mb} | {rss[name]:.0f} | {failed} |")
    print(f"\nspeedup {results['speedup']:.2f}x, int8 {results['speedup_int8']:.2f}x "
          f"(target >= 3x); wrote {out}")  # fmt: skip
    print(f"command: {results['command']}")


if __name__ == "__main__":
    main()
