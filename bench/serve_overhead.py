"""Where a single request's server overhead goes (diagnostic for ``bench/serve_latency.py``).

Two measurements, both on the same classifier skills as ``bench/serve_latency.py`` (a
``TextClassifier(strategy="head")`` on MiniLM trained on the tests' small intent set, and
its ``slmstack export --int8``), model threads 1:

1. **The transport floor.** A bare ASGI app on uvicorn (no FastAPI, no model) that
   returns a constant JSON body, 3,000 sequential keep-alive requests from the standard
   library's ``http.client`` and from ``httpx``: what the socket, uvicorn and the client
   cost before our app runs at all.
2. **The client's own cost.** ``slmstack serve`` with the int8 skill (1 worker, model
   threads 1), the same request from ``http.client`` and from ``httpx`` in blocks of 300
   (3 rounds, the clients taking turns): wall p50, the client process's CPU time per
   request (``time.process_time``) and the Python calls it makes per request (counted
   with ``sys.setprofile`` over 100 more requests, untimed).
3. **The app in process.** ``slmstack serve``'s FastAPI app called through ASGI (no
   sockets) on uvloop, 1,400 timed requests per skill after 100 warm-ups, each followed
   by the same ``skill.predict([text])`` in process. The batcher's ``submit`` and its
   model call are timed (by wrapping them), so each request splits into: ``pre``
   (middleware, routing, body parsing and validation up to the batcher), ``hop_in`` (to
   the model thread), ``model``, ``hop_out`` (the result back to the event loop) and
   ``post`` (the response). Medians.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0 \\
        nice -n 5 .venv/bin/python bench/serve_overhead.py   # takes the CPU lock itself

Writes ``bench/results/serve_overhead.json``.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

OUT = Path(__file__).resolve().parent / "results" / "serve_overhead.json"
BODY = b'{"label":"card","confidence":0.9}'


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A constant JSON answer: the floor of any ASGI app on uvicorn."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def floor(n: int = 3000) -> dict[str, float]:
    import httpx

    from serve_latency import free_port, wait_ready

    port = free_port()
    code = f"import uvicorn, serve_overhead as m; uvicorn.run(m.bare_app, port={port}, "
    code += "log_level='warning')"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as probe:
            wait_ready(probe)  # the bare app answers any path, /readyz included
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        plain, lib = [], []
        with httpx.Client() as client:
            for _ in range(n):
                t0 = time.perf_counter()
                conn.request("POST", "/", b'{"text":"hello"}', {"content-type": "application/json"})
                conn.getresponse().read()
                plain.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                client.post(f"http://127.0.0.1:{port}/", json={"text": "hello"})
                lib.append((time.perf_counter() - t0) * 1000)
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        "http_client_p50_ms": round(statistics.median(plain[100:]), 3),
        "httpx_p50_ms": round(statistics.median(lib[100:]), 3),
    }


def clients(folder: Path, rounds: int = 3, n: int = 300) -> dict[str, Any]:
    """Wall p50, client CPU ms and Python calls per request, per client (see docstring)."""
    import httpx

    from serve_latency import TEXTS, start_server, wait_ready

    proc, url = start_server(folder, "int8", 2.0, 1)
    port = int(url.rsplit(":", 1)[1])
    path = "/v1/skills/intent/predict"
    try:
        client = httpx.Client(base_url=url, timeout=30)
        wait_ready(client)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def plain(text: str) -> None:
            body = json.dumps({"text": text}).encode()
            conn.request("POST", path, body, {"content-type": "application/json"})
            conn.getresponse().read()

        ways = {
            "http_client": plain,
            "httpx": lambda text: client.post(path, json={"text": text}).raise_for_status(),
        }
        walls: dict[str, list[float]] = {k: [] for k in ways}
        cpu: dict[str, list[float]] = {k: [] for k in ways}
        for _ in range(rounds):
            for name, way in ways.items():
                for i in range(30):
                    way(TEXTS[i % len(TEXTS)])
                cpu0 = time.process_time()
                for i in range(n):
                    t0 = time.perf_counter()
                    way(TEXTS[i % len(TEXTS)])
                    walls[name].append((time.perf_counter() - t0) * 1000)
                cpu[name].append((time.process_time() - cpu0) * 1000 / n)
        calls: dict[str, float] = {}
        for name, way in ways.items():
            count = [0]

            def hook(frame: Any, event: str, arg: Any, count: list[int] = count) -> None:
                if event in ("call", "c_call"):
                    count[0] += 1

            sys.setprofile(hook)
            for i in range(100):
                way(TEXTS[i % len(TEXTS)])
            sys.setprofile(None)
            calls[name] = count[0] / 100
        client.close()
        conn.close()
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        name: {
            "p50_ms": round(statistics.median(walls[name]), 3),
            "client_cpu_ms_per_request": [round(c, 3) for c in cpu[name]],
            "python_calls_per_request": round(calls[name]),
        }
        for name in ways
    }


def phases(folder: Path, kind: str, n: int = 1500) -> dict[str, float]:
    """The app in process, split into phases (see the module docstring)."""
    import uvloop

    from serve_latency import TEXTS
    from slmstack.serve import batcher as batcher_module
    from slmstack.serve.app import create_app
    from slmstack.skills.base import load

    config = folder / f"serve-{kind}.yaml"
    config.write_text(
        f"skills: {{intent: {folder / kind}}}\nbatching: {{max_wait_ms: 2}}\n"
        "threads: {torch: 1}\n"
    )
    stamps: dict[str, float] = {}
    batcher = batcher_module.MicroBatcher
    submit, call = batcher.submit, batcher._call

    async def timed_submit(self: Any, items: Any, **kwargs: Any) -> Any:
        stamps["submit"] = time.perf_counter()
        out = await submit(self, items, **kwargs)
        stamps["returned"] = time.perf_counter()
        return out

    def timed_call(self: Any, items: Any) -> Any:
        stamps["model_start"] = time.perf_counter()
        out = call(self, items)
        stamps["model_end"] = time.perf_counter()
        return out

    batcher.submit, batcher._call = timed_submit, timed_call  # type: ignore[method-assign]
    try:
        app = create_app(config)
        skill = load(folder / kind)
        parts: dict[str, list[float]] = {
            k: [] for k in ("pre", "hop_in", "model", "hop_out", "post", "app", "in_process")
        }

        async def request(body: bytes) -> None:
            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": "POST", "scheme": "http", "path": "/v1/skills/intent/predict",
                "raw_path": b"/v1/skills/intent/predict", "query_string": b"",
                "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
                "headers": [(b"host", b"x"), (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())],
                "state": {},
            }  # fmt: skip
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                await asyncio.sleep(10)
                return {"type": "http.disconnect"}

            status: list[int] = []

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status.append(message["status"])

            await app(scope, receive, send)
            if status != [200]:
                raise SystemExit(f"the app answered {status}")

        async def run() -> None:
            async with app.router.lifespan_context(app):
                for i in range(n):
                    text = TEXTS[i % len(TEXTS)]
                    t0 = time.perf_counter()
                    skill.predict([text])
                    alone = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    await request(json.dumps({"text": text}).encode())
                    end = time.perf_counter()
                    if i < 100:  # warm-up
                        continue
                    parts["in_process"].append(alone)
                    parts["app"].append(end - t0)
                    parts["pre"].append(stamps["submit"] - t0)
                    parts["hop_in"].append(stamps["model_start"] - stamps["submit"])
                    parts["model"].append(stamps["model_end"] - stamps["model_start"])
                    parts["hop_out"].append(stamps["returned"] - stamps["model_end"])
                    parts["post"].append(end - stamps["returned"])

        uvloop.run(run())
    finally:
        batcher.submit, batcher._call = submit, call  # type: ignore[method-assign]
    out = {k: round(statistics.median(v) * 1000, 3) for k, v in parts.items()}
    out["app_less_in_process"] = round(out["app"] - out["in_process"], 3)
    return out


def main() -> None:
    import torch

    from _machine import cpu_lock, machine, scratch
    from serve_latency import make_skills

    torch.set_num_threads(1)
    os.environ["SLMSTACK_ONNX_THREADS"] = "1"
    with cpu_lock():
        folder = scratch("serve-overhead-")
        make_skills(folder)
        result: dict[str, Any] = {"floor_bare_uvicorn": floor()}
        result["clients_against_serve_int8"] = clients(folder)
        for kind in ("int8", "torch"):
            result[f"app_in_process_{kind}"] = phases(folder, kind)
    result.update(machine=machine(), model_threads=1,
                  command="nice -n 5 .venv/bin/python bench/serve_overhead.py")  # fmt: skip
    print(json.dumps(result, indent=1))
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
