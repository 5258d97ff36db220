"""Ray Serve (``slmstack serve --engine ray``) against the local server (uvicorn).

Two skills behind both engines, from one serve config: ``intent``, a
``TextClassifier(strategy="head")`` on MiniLM (torch, one thread), and ``keywords``, the
test suite's keyword skill (microseconds of Python: what is left is pure serving
overhead). Both servers run on this machine with one model thread; Ray runs a local
instance (loopback, no dashboard) with one ingress replica and one replica per skill.

Measured, interleaved in one run so that both engines see the same background load:

1. single-request latency: 200 sequential one-text requests per skill and engine,
   alternating request by request (after 20 of warm-up);
2. throughput at saturation: 32 concurrent clients sending one-text requests for 4 s,
   alternating engines, 2 rounds each;
3. the parts of Ray's overhead: ``GET /livez`` (no model: the HTTP path alone, so the
   difference is the proxy → ingress hop), a direct deployment-handle call to the
   keyword skill's host from this process (handle call, pickling, ``@serve.batch``
   wait), and pickling the call and the answer alone.

    flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python bench/serve_ray.py [--write-results]
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import TRAIN
from serve_doubles import Keywords
from serve_latency import free_port, pct, summary, wait_ready
from slmstack import TextClassifier
from slmstack.types import Prediction

N = 200
WARMUP = 20
CLIENTS = 32
SECONDS = 4.0
ROUNDS = 2
TEXTS = ["where is my new card", "I want a refund", "how do I reset my password", "hello"]
SKILLS = ("keywords", "intent")
TESTS = Path(__file__).resolve().parents[1] / "tests"  # on the servers' path: serve_doubles


def write_config(folder: Path) -> Path:
    TextClassifier(strategy="head").fit(TRAIN).save(folder / "intent")
    Keywords().fit(TRAIN).save(folder / "keywords")
    config = folder / "serve.yaml"
    config.write_text(
        f"skills: {{intent: {folder / 'intent'}, keywords: {folder / 'keywords'}}}\n"
        "threads: {torch: 1}\n"
        "ray:\n"
        "  ingress: {num_cpus: 0}\n"  # the 2 cores are for the models (and the client)
        "  models: {num_cpus: 1}\n"
        "  imports: [serve_doubles]\n"
    )
    return config


def start_local(config: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import serve_doubles; from slmstack.cli.app import main; main()",
         "serve",
         str(config), "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def start_ray(config: Path) -> str:
    import ray

    from slmstack.serve.ray_engine import deploy

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             logging_level="ERROR", log_to_driver=False)  # fmt: skip
    port = free_port()
    deploy(config, port=port, runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)}})
    return f"http://127.0.0.1:{port}"


def single(clients: dict[str, httpx.Client]) -> dict[str, list[float]]:
    """Sequential one-text requests, each engine and skill in turn, then /livez."""
    ms: dict[str, list[float]] = {}
    for i in range(N + WARMUP):
        for engine, client in clients.items():
            for skill in SKILLS:
                start = time.perf_counter()
                client.post(f"/v1/skills/{skill}/predict", json={"text": TEXTS[i % 4]}
                            ).raise_for_status()  # fmt: skip
                took = (time.perf_counter() - start) * 1000
                if i >= WARMUP:
                    ms.setdefault(f"{engine}_{skill}", []).append(took)
            start = time.perf_counter()
            client.get("/livez").raise_for_status()
            if i >= WARMUP:
                ms.setdefault(f"{engine}_livez", []).append((time.perf_counter() - start) * 1000)
    return ms


async def saturate(url: str, skill: str) -> dict[str, float]:
    """``CLIENTS`` concurrent clients for ``SECONDS``: requests/s, latency, refusals."""
    done, refused, ms = 0, 0, []
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        until = time.perf_counter() + SECONDS

        async def worker(k: int) -> None:
            nonlocal done, refused
            i = k
            while time.perf_counter() < until:
                start = time.perf_counter()
                r = await client.post(f"/v1/skills/{skill}/predict", json={"text": TEXTS[i % 4]})
                i += 1
                if r.status_code == 429:
                    refused += 1
                    continue
                r.raise_for_status()
                done += 1
                ms.append((time.perf_counter() - start) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(CLIENTS)))
        elapsed = time.perf_counter() - start
    return {"requests_per_s": done / elapsed, "p50_ms": statistics.median(ms),
            "p99_ms": pct(ms, 0.99), "refused_429": refused}  # fmt: skip


def handle_parts(config: Path) -> dict[str, float]:
    """A direct handle call to the keyword host, and pickling the call and the answer."""
    from ray import serve

    from slmstack.serve import load_config
    from slmstack.serve.ray_engine import APP_NAME
    from slmstack.serve.ray_plan import plan_hosts
    from slmstack.serve.ray_remote import HostAnswer, HostCall

    settings = load_config(config)
    folder = str(settings.skills["keywords"])
    name = next(p.name for p in plan_hosts(settings) if str(p.folders[0]) == folder)
    handle = serve.get_deployment_handle(name, app_name=APP_NAME)
    call = HostCall(folder, [TEXTS[0]])
    ms = []
    for i in range(N + WARMUP):
        start = time.perf_counter()
        handle.predict.remote(call).result()
        if i >= WARMUP:
            ms.append((time.perf_counter() - start) * 1000)
    answer = HostAnswer([Keywords().fit(TRAIN).predict([TEXTS[0]])[0]])
    assert isinstance(answer.predictions[0], Prediction)
    start = time.perf_counter()
    for _ in range(1000):
        pickle.loads(pickle.dumps(call))
        pickle.loads(pickle.dumps(answer))
    pickling_us = (time.perf_counter() - start) * 1000  # µs per round trip of both
    return {"handle_call_p50_ms": round(statistics.median(ms), 3),
            "handle_call_p99_ms": round(pct(ms, 0.99), 3),
            "pickle_call_and_answer_us": round(pickling_us, 1)}  # fmt: skip


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from _machine import scratch

    folder = scratch("serve-ray-")
    config = write_config(folder)
    proc, local_url = start_local(config)
    try:
        ray_url = start_ray(config)
        urls = {"local": local_url, "ray": ray_url}
        clients = {e: httpx.Client(base_url=u, timeout=30) for e, u in urls.items()}
        for client in clients.values():
            wait_ready(client)
        ms = single(clients)
        for client in clients.values():
            client.close()
        sat: dict[str, list[dict[str, float]]] = {}
        for _ in range(ROUNDS):
            for skill in SKILLS:
                for engine, url in urls.items():
                    sat.setdefault(f"{engine}_{skill}", []).append(
                        asyncio.run(saturate(url, skill))
                    )
        parts = handle_parts(config)
    finally:
        proc.terminate()
        proc.wait(30)
    results: dict[str, object] = {
        "single_request": {k: summary(v) for k, v in ms.items()},
        "saturation": {
            k: {"requests_per_s": round(statistics.fmean(r["requests_per_s"] for r in runs), 1),
                "p50_ms": round(statistics.fmean(r["p50_ms"] for r in runs), 2),
                "p99_ms": round(statistics.fmean(r["p99_ms"] for r in runs), 2),
                "refused_429": int(sum(r["refused_429"] for r in runs))}
            for k, runs in sat.items()
        },
        "ray_overhead_p50_ms": {
            s: round(statistics.median(ms[f"ray_{s}"]) - statistics.median(ms[f"local_{s}"]), 3)
            for s in (*SKILLS, "livez")
        },
        "parts": parts,
    }  # fmt: skip
    from _machine import machine

    results.update(
        requests=N, clients=CLIENTS, seconds_per_phase=SECONDS, rounds=ROUNDS,
        model_threads=1, max_wait_ms=2.0, cores=len(os.sched_getaffinity(0)),
        machine=machine(),
        command="flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python bench/serve_ray.py "
                "--write-results",
    )  # fmt: skip
    print(json.dumps(results, indent=2))
    if "--write-results" in sys.argv:
        out = Path(__file__).parent / "results" / "serve_ray.json"
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
