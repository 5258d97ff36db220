"""Single-request latency of a classifier skill: in process, and over HTTP on loopback.

Trains a ``TextClassifier(strategy="head")`` on MiniLM on a few dozen intents, exports it
to ONNX int8 (``slmstack export --int8``), then times ``$ROUNDS`` (3) rounds of 200
sequential one-text requests for each runtime (torch, int8): ``skill.predict([text])`` in
this process, and ``POST
/v1/skills/intent/predict`` to ``slmstack serve`` (uvicorn, 1 worker) with the default
``batching.max_wait_ms`` (2 ms) and with 0 ms. All ways are interleaved request by
request, so that each sees the same load from the rest of the machine. The client is one
keep-alive ``httpx.Client`` per server (what the ``openai`` client uses); to show the
client's own share, the 2 ms servers also get each request from the standard library's
``http.client``. A third 2 ms server per runtime is the same app with its hot path
(``slmstack.serve.hot_path``) taken out, so that FastAPI routes every request, as before
the hot path: the difference is what the hot path saves (``*_hot_path_saves_p50_ms``).
An overhead is a round's p50 over HTTP less its p50 in process; the
median over rounds is reported, beside each round's. The same is then measured in blocks
(``in_blocks``): each way gets 25 requests back to back (after 5 untimed), the ways taking
turns, so that each server is warm, as under a steady stream of requests; interleaved
request by request, every server wakes cold from the others' turns. Each server is a
separate process, as in production. Model threads: ``$TORCH_THREADS`` (1 by default)
here and in the servers (torch, and onnxruntime's intra-op threads).

It also times what a shared per-key rate limit (``--workers N``, see
``slmstack.serve.rates``) adds to a request: the limiter's check on a SQLite store, as the
auth middleware awaits it (in a thread, off the event loop), over 1,000 checks.

It takes the shared CPU lock itself (``bench/_machine.cpu_lock``: do not wrap it in flock)::

    nice -n 5 .venv/bin/python bench/serve_latency.py [--write-results]
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import TRAIN
from slmstack import TextClassifier

N = 200  # requests per way per round
ROUNDS = int(os.environ.get("ROUNDS", "3"))  # the overheads: median over rounds
BLOCK = 25  # requests per way per turn in the blocked order
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


RECONNECTS = [0]  # stale keep-alive connections reopened by raw_post


def raw_post(conn: http.client.HTTPConnection, text: str) -> None:
    """One keep-alive request with the standard library's client (no httpx).

    uvicorn closes a connection idle for 5 s, which a way waiting for its next block can
    be on a slow machine; like httpx, the request is then sent again on a new connection
    (counted in ``RECONNECTS``; in blocks this happens in a block's untimed first requests).
    """
    body = json.dumps({"text": text}).encode()
    headers = {"content-type": "application/json"}
    try:
        conn.request("POST", "/v1/skills/intent/predict", body, headers)
        response = conn.getresponse()
    except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
        RECONNECTS[0] += 1
        conn.close()
        conn.request("POST", "/v1/skills/intent/predict", body, headers)
        response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise SystemExit(f"the server answered {response.status}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The server without its hot path (``slmstack.serve.hot_path``): FastAPI routes every
# request, as before the hot path was added. Only this benchmark builds it.
ROUTED = """\
import sys, uvicorn
from slmstack.serve.app import create_app
from slmstack.serve.hot_path import HotPath
app = create_app(sys.argv[1])
app.user_middleware = [m for m in app.user_middleware if m.cls is not HotPath]
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", lifespan="on")
"""


def start_server(
    folder: Path, skill: str, max_wait_ms: float, threads: int, *, routed: bool = False
) -> tuple[subprocess.Popen, str]:
    config = folder / f"serve-{skill}-{max_wait_ms:g}.yaml"
    config.write_text(
        f"skills: {{intent: {folder / skill}}}\n"
        f"batching: {{max_wait_ms: {max_wait_ms}}}\nthreads: {{torch: {threads}}}\n"
    )
    port = free_port()
    if routed:
        command = [sys.executable, "-c", ROUTED, str(config), str(port)]
    else:
        command = [sys.executable, "-c", "from slmstack.cli.app import main; main()", "serve",
                   str(config), "--port", str(port), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def rate_check_cost(folder: Path, n: int = 1000) -> dict[str, float]:
    """Microseconds a shared rate-limit check adds to a request (p50, p99), as awaited."""
    import asyncio

    from slmstack.serve.rates import SharedRateLimiter

    limiter = SharedRateLimiter(f"sqlite:///{folder / 'rates.db'}", 1e9)

    async def timed() -> list[float]:
        out = []
        for i in range(n + 50):
            start = time.perf_counter()
            await asyncio.to_thread(limiter.check, f"key{i % 4}")
            if i >= 50:
                out.append((time.perf_counter() - start) * 1e6)
        return out

    us = asyncio.run(timed())
    bare = []
    for i in range(n):
        start = time.perf_counter()
        limiter.check(f"key{i % 4}")
        bare.append((time.perf_counter() - start) * 1e6)
    limiter.close()
    return {
        "awaited_p50_us": round(statistics.median(us), 1),
        "awaited_p99_us": round(pct(us, 0.99), 1),
        "check_p50_us": round(statistics.median(bare), 1),
    }


def overheads(rounds: list[dict[str, list[float]]], kinds: list[str]) -> dict[str, Any]:
    """Pooled latency summaries, and each overhead: the median over rounds of a round's
    HTTP p50 less its in-process p50 (each round's value beside it)."""
    names = list(rounds[0])
    pooled = {n: [v for r in rounds for v in r[n]] for n in names}
    results: dict[str, Any] = {name: summary(values) for name, values in pooled.items()}
    for kind in kinds:
        for way, key in (
            ("http", "http_max_wait_2ms"),
            ("http_client", "http_client_max_wait_2ms"),
        ):
            per_round = [
                statistics.median(r[f"{kind}_{key}"]) - statistics.median(r[f"{kind}_in_process"])
                for r in rounds
            ]
            results[f"{kind}_{way}_overhead_p50_ms"] = round(statistics.median(per_round), 3)
            results[f"{kind}_{way}_overhead_p50_ms_per_round"] = [round(x, 3) for x in per_round]
        # What the hot path saves: the same request, same client, FastAPI-routed less hot.
        saved = [
            statistics.median(r[f"{kind}_http_routed_max_wait_2ms"])
            - statistics.median(r[f"{kind}_http_max_wait_2ms"])
            for r in rounds
        ]
        results[f"{kind}_hot_path_saves_p50_ms"] = round(statistics.median(saved), 3)
        results[f"{kind}_hot_path_saves_p50_ms_per_round"] = [round(x, 3) for x in saved]
    return results


def make_skills(folder: Path) -> TextClassifier:
    """The measured skill, saved as ``folder/torch`` and exported as ``folder/int8``."""
    from slmstack.export import export_classifier

    clf = TextClassifier(strategy="head", precision="auto").fit(TRAIN)
    clf.save(folder / "torch")
    export_classifier(clf, folder / "int8", TRAIN, int8=True)
    return clf


def main() -> None:
    from contextlib import nullcontext

    from _machine import cpu_lock

    with nullcontext() if "--no-lock" in sys.argv else cpu_lock():  # --no-lock: caller holds it
        measure()


def measure() -> None:
    import torch

    threads = int(os.environ.get("TORCH_THREADS", "1"))
    torch.set_num_threads(threads)
    os.environ["SLMSTACK_ONNX_THREADS"] = str(threads)
    from _machine import scratch

    folder = scratch("serve-latency-")
    clf = make_skills(folder)
    from slmstack.skills.base import load

    skills = {kind: load(folder / kind) for kind in ("torch", "int8")}
    servers = {f"{kind}_http_max_wait_{w:g}ms": start_server(folder, kind, w, threads)
               for kind in skills for w in (2.0, 0.0)}  # fmt: skip
    for kind in skills:  # the same server with FastAPI routing every request (no hot path)
        servers[f"{kind}_http_routed_max_wait_2ms"] = start_server(
            folder, kind, 2.0, threads, routed=True
        )
    clients = {name: httpx.Client(base_url=url, timeout=30) for name, (_, url) in servers.items()}
    ports = {k: int(servers[f"{k}_http_max_wait_2ms"][1].rsplit(":", 1)[1]) for k in skills}
    plain = {k: http.client.HTTPConnection("127.0.0.1", p, timeout=30) for k, p in ports.items()}
    try:
        for client in clients.values():
            wait_ready(client)
        ways: dict[str, Any] = {}
        for kind, skill in skills.items():
            ways[f"{kind}_in_process"] = lambda text, s=skill: s.predict([text])
        for name, client in clients.items():
            ways[name] = lambda text, c=client: c.post(
                "/v1/skills/intent/predict", json={"text": text}
            ).raise_for_status()
        for kind in skills:  # the same request from a lean client: the client's share
            ways[f"{kind}_http_client_max_wait_2ms"] = lambda text, k=kind: raw_post(plain[k], text)
        names = list(ways)

        def timed(name: str, text: str) -> float:
            start = time.perf_counter()
            ways[name](text)
            return (time.perf_counter() - start) * 1000

        rounds: list[dict[str, list[float]]] = [{n: [] for n in names} for _ in range(ROUNDS)]
        # Interleaved, so that every way sees the same load from the rest of the machine.
        for i in range(ROUNDS * (N + 20)):
            took = {name: timed(name, TEXTS[i % 4]) for name in names}
            if i % (N + 20) >= 20:  # after each round's warm-up
                for name, value in took.items():
                    rounds[i // (N + 20)][name].append(value)
        # In blocks: each way gets BLOCK requests back to back (after 5 untimed), the ways
        # taking turns, so that a server is warm as under a steady stream of requests.
        blocks: list[dict[str, list[float]]] = [{n: [] for n in names} for _ in range(ROUNDS)]
        for r in range(ROUNDS):
            for b in range(N // BLOCK):
                turn = names[b % len(names) :] + names[: b % len(names)]
                for name in turn:
                    for i in range(BLOCK + 5):
                        value = timed(name, TEXTS[i % 4])
                        if i >= 5:
                            blocks[r][name].append(value)
    finally:
        for client in clients.values():
            client.close()
        for conn in plain.values():
            conn.close()
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    results = overheads(rounds, list(skills))
    results["in_blocks"] = {"block": BLOCK, **overheads(blocks, list(skills))}
    from _machine import machine

    results["shared_rate_limit_sqlite"] = rate_check_cost(folder)
    results.update(requests=N, rounds=ROUNDS, model_threads=threads,
                   http_client_reconnects=RECONNECTS[0],
                   cores=len(os.sched_getaffinity(0)),
                   torch_precision=clf.precision, machine=machine(),
                   command="nice -n 5 .venv/bin/python bench/serve_latency.py --write-results"
                   )  # fmt: skip
    print(json.dumps(results, indent=2))
    if "--write-results" in sys.argv:
        out = Path(__file__).parent / "results" / "serve_latency.json"
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
