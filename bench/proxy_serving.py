"""Latency of a promoted task's call answered by its student through ``slmstack proxy``.

Two students, each served by a proxy in a process of its own (uvicorn, recording to
SQLite in a temporary folder, audits off, threshold 0 so the student answers every
call): a fake one that answers at once (what is timed is the proxy's own cost: parsing,
matching the template, the worker thread, the answer's JSON, the recording), and a real
``TextClassifier(strategy="head")`` on MiniLM trained on ``tests/fixtures.py`` TRAIN
(``--classifier``; served through the real ``slmstack proxy --tasks --shadow`` path).
Each is timed in process (``student.predict([text])``) and through the proxy (one
keep-alive ``httpx.Client``, a JSON chat completion, to the last byte), interleaved
call by call; the added p50 is the difference of the medians. For scale, a bare ASGI app
on uvicorn answering a fixed JSON (the HTTP floor on this machine) is timed too.

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
        .venv/bin/python bench/proxy_serving.py [--classifier] [--n 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from _machine import scratch

PREFIX, SUFFIX = "Classify this banking query: card_arrival, pin_blocked.\nQuery: ", "\nIntent:"
QUERY = "my new card has not arrived yet"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PREFIX + QUERY + SUFFIX}]}
ROOT = Path(__file__).resolve().parent.parent


class FakeStudent:
    """Answers at once."""

    def predict(self, texts):
        from slmstack.types import Prediction

        return [Prediction(label="card_arrival", confidence=0.99) for _ in texts]


def write_tasks(folder: Path) -> Path:
    tasks = folder / "tasks.json"
    task = {"task_id": "t-bank", "kind": "classification", "system": "", "prefix": PREFIX,
            "suffix": SUFFIX}  # fmt: skip
    tasks.write_text(json.dumps({"tasks": [task]}))
    return tasks


def promote_all(url: str) -> None:
    from slmstack.proxy.promote import Promotion, ShadowStore

    ShadowStore(url).record(Promotion("t-bank", datetime.now(UTC), True, 1, 1, 1.0, 0.9, 0.95,
                                      "bench: every call to the student", 0.0, 1.0))  # fmt: skip


def serve_fake(port: int, url: str) -> None:
    import uvicorn

    from slmstack.costs import Ledger, load_prices
    from slmstack.proxy import ProxyApp, ProxyConfig, Recorder, TrafficStore
    from slmstack.proxy.promote import ShadowStore
    from slmstack.proxy.recording import Pricing
    from slmstack.proxy.serving import Serving
    from slmstack.proxy.shadow import Shadow, ShadowTask

    store = ShadowStore(url)
    task = ShadowTask("t-bank", "classification", "", PREFIX, SUFFIX, FakeStudent())
    recorder = Recorder(TrafficStore(url), Ledger(url), pricing=Pricing(load_prices()),
                        shadow=Shadow([task]), shadow_store=store)  # fmt: skip
    config = ProxyConfig(upstream="http://127.0.0.1:9/v1", ledger=url, audit_rate=0.0)
    app = ProxyApp(config, recorder, serving=Serving([task], store, audit_rate=0.0))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


async def floor_app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    message = {"role": "assistant", "content": "card_arrival"}
    body = json.dumps({"object": "chat.completion", "choices": [{"index": 0, "message": message}]})
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body.encode()})


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(client: httpx.Client) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            client.get("/healthz")
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"{client.base_url} did not start")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--classifier", action="store_true", help="also a real MiniLM classifier")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--serve-fake", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--serve-floor", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ledger", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_fake:
        serve_fake(args.serve_fake, args.ledger)
        return
    if args.serve_floor:
        import uvicorn

        uvicorn.run(floor_app, host="127.0.0.1", port=args.serve_floor, log_level="warning")
        return
    folder = scratch("proxy-serving-bench-")
    students = {"fake": FakeStudent()}
    procs, targets = [], {}
    port = free_port()
    procs.append(subprocess.Popen([sys.executable, __file__, "--serve-floor", str(port)]))
    targets["http_floor"] = f"http://127.0.0.1:{port}"
    url = f"sqlite:///{folder / 'fake.db'}"
    promote_all(url)
    port = free_port()
    procs.append(subprocess.Popen([sys.executable, __file__, "--serve-fake", str(port),
                                   "--ledger", url]))  # fmt: skip
    targets["fake"] = f"http://127.0.0.1:{port}"
    if args.classifier:
        sys.path.insert(0, str(ROOT / "tests"))
        from fixtures import TRAIN
        from slmstack.skills import TextClassifier
        from slmstack.skills.base import load

        TextClassifier(strategy="head", seed=0).fit(TRAIN).save(folder / "clf")
        students["classifier"] = load(folder / "clf")
        url = f"sqlite:///{folder / 'clf.db'}"
        promote_all(url)
        port = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-c", "from slmstack.cli.app import main; main()", "proxy",
             "--upstream", "http://127.0.0.1:9/v1", "--port", str(port), "--ledger", url,
             "--tasks", str(write_tasks(folder)), "--shadow", f"t-bank={folder / 'clf'}",
             "--audit-rate", "0"]))  # fmt: skip
        targets["classifier"] = f"http://127.0.0.1:{port}"
    clients = {name: httpx.Client(base_url=u, timeout=60) for name, u in targets.items()}
    ms: dict[str, list[float]] = {}
    try:
        for client in clients.values():
            wait_ready(client)
        for i in range(args.n + 20):
            for name, student in students.items():
                start = time.perf_counter()
                student.predict([QUERY])
                if i >= 20:
                    ms.setdefault(f"{name}_in_process", []).append(
                        (time.perf_counter() - start) * 1e3
                    )
            for name, client in clients.items():
                start = time.perf_counter()
                r = client.post("/v1/chat/completions", json=BODY)
                r.raise_for_status()
                if name != "http_floor" and r.headers["x-slmstack-answered-by"] != "student":
                    raise SystemExit(f"{name}: the proxy did not answer from the student")
                if i >= 20:
                    ms.setdefault(f"{name}_via_proxy" if name != "http_floor" else name,
                                  []).append((time.perf_counter() - start) * 1e3)  # fmt: skip
    finally:
        for client in clients.values():
            client.close()
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    p50 = {name: round(statistics.median(v), 3) for name, v in ms.items()}
    for name in students:
        p50[f"{name}_added_p50_ms"] = round(p50[f"{name}_via_proxy"] - p50[f"{name}_in_process"], 3)
    print(json.dumps({"n": args.n, "p50_ms": p50}, indent=1))


if __name__ == "__main__":
    main()
