"""Added latency of ``slmstack proxy``: the same requests direct to an upstream and through it.

The upstream is a fake OpenAI-compatible server (a bare ASGI app on uvicorn, in its own
process: this file with ``--serve-upstream PORT``) that answers at once, so what is
timed is the proxy's own cost, not an LLM's. Two proxies run in processes of their own
(``slmstack proxy``, as in production), recording to SQLite in a temporary folder: one
plain, one with ``--mask`` (e-mail, phone, IBAN, card and name patterns, Fernet). The
client (one keep-alive ``httpx.Client`` per target) sends N chat completions to each
target, interleaved request by request so that each sees the same load from the rest of
the machine, then N streamed ones (8 SSE chunks and a usage chunk, timed to the last
byte). The message carries an e-mail and a phone number, so the masking proxy has work.
Afterwards each proxy's ``/healthz`` must count every call as recorded.

    flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python bench/proxy.py [--write-results]
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from slmstack.proxy import generate_key

N = int(os.environ.get("PROXY_BENCH_N", "400"))
WARMUP = min(30, N)
BODY = {"model": "gpt-4o-mini", "temperature": 0, "messages": [
    {"role": "system", "content": "You classify banking queries."},
    {"role": "user", "content": "Classify this banking query into one of these intents: "
     "card_arrival, pin_blocked, change_pin.\nQuery: my new card has not arrived, write to "
     "ana.berg@example.com or call +44 20 7946 0958\nIntent:"}]}  # fmt: skip
STREAM = {**BODY, "stream": True, "stream_options": {"include_usage": True}}


# ---------------------------------------------------------------------- the fake upstream
async def upstream(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    request = json.loads(body or b"{}")
    usage = {"prompt_tokens": 60, "completion_tokens": 8, "total_tokens": 68}
    if request.get("stream"):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for piece in ["card", "_", "arr", "ival", "", "", "", ""]:
            event = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "model": request["model"],
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            await send(
                {
                    "type": "http.response.body",
                    "more_body": True,
                    "body": f"data: {json.dumps(event)}\n\n".encode(),
                }
            )
        event = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "model": request["model"],
            "choices": [],
            "usage": usage,
        }
        await send(
            {
                "type": "http.response.body",
                "more_body": True,
                "body": f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n".encode(),
            }
        )
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    data = json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": request.get("model", ""),
            "usage": usage,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "card_arrival"},
                }
            ],
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data.encode()})


# ---------------------------------------------------------------------- timing
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ordered[min(len(ms) - 1, int(0.99 * len(ms)))], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not start")


def main() -> None:
    from _machine import scratch

    folder = scratch("proxy-bench-")
    up_port = free_port()
    procs = [subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(up_port)])]
    env = dict(os.environ)
    env["SLMSTACK_MASK_KEY"] = generate_key()
    targets = {"direct": f"http://127.0.0.1:{up_port}"}
    for name, extra in (("proxy", []), ("proxy_masked", ["--mask"])):
        port = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-c", "from slmstack.cli.app import main; main()", "proxy",
             "--upstream", f"http://127.0.0.1:{up_port}/v1", "--port", str(port),
             "--ledger", f"sqlite:///{folder / name}.db", *extra], env=env))  # fmt: skip
        targets[name] = f"http://127.0.0.1:{port}"
    clients = {name: httpx.Client(base_url=url, timeout=30) for name, url in targets.items()}
    try:
        wait_ready(targets["direct"] + "/v1/models")
        for name in ("proxy", "proxy_masked"):
            wait_ready(targets[name] + "/healthz")
        ms: dict[str, list[float]] = {}
        for label, body in (("json", BODY), ("stream", STREAM)):
            for i in range(N + WARMUP):
                order = list(clients.items())
                order = order[i % len(order) :] + order[: i % len(order)]  # rotate who goes first
                for name, client in order:
                    start = time.perf_counter()
                    if body.get("stream"):
                        with client.stream("POST", "/v1/chat/completions", json=body) as r:
                            r.raise_for_status()
                            for _ in r.iter_raw():
                                pass
                    else:
                        client.post("/v1/chat/completions", json=body).raise_for_status()
                    if i >= WARMUP:
                        ms.setdefault(f"{label}_{name}", []).append(
                            (time.perf_counter() - start) * 1000
                        )
        time.sleep(1.0)  # the recorders write every 0.2 s
        recorded = {
            name: clients[name].get("/healthz").json() for name in ("proxy", "proxy_masked")
        }
    finally:
        for client in clients.values():
            client.close()
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    results: dict[str, object] = {name: summary(values) for name, values in ms.items()}
    for label in ("json", "stream"):
        base = statistics.median(ms[f"{label}_direct"])
        for name in ("proxy", "proxy_masked"):
            added = statistics.median(ms[f"{label}_{name}"]) - base
            results[f"{label}_{name}_added_p50_ms"] = round(added, 3)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _machine import machine

    results.update(requests_per_target=N, sent_per_proxy=2 * (N + WARMUP), recorded=recorded,
                   cores=len(os.sched_getaffinity(0)), machine=machine(),
                   note="the machine ran other jobs' background load (a llama.cpp benchmark)",
                   command="flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python bench/proxy.py "
                           "--write-results")  # fmt: skip
    print(json.dumps(results, indent=2))
    if "--write-results" in sys.argv:
        out = Path(__file__).parent / "results" / "proxy.json"
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    if "--serve-upstream" in sys.argv:
        import uvicorn

        port = int(sys.argv[sys.argv.index("--serve-upstream") + 1])
        uvicorn.run(upstream, host="127.0.0.1", port=port, log_level="warning")
    else:
        main()
