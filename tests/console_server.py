"""A real ``slmstack serve`` app on a loopback port, with packets and spend to show, for the
console's browser tests (Chromium needs a socket, not a TestClient)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn

from serve_doubles import write_server
from slmstack.costs import Ledger
from slmstack.costs.ledger import LedgerRow
from slmstack.serve import create_app
from slmstack.workflows import Inbox, Packet

ANA_KEY = "k-ana-0123456789abcdef"
BEN_KEY = "k-ben-0123456789abcdef"
KEYS_ENV = "SLMSTACK_CONSOLE_TEST_KEYS"
AUTH = f"""\
auth:
  keys_env: {KEYS_ENV}
  public: [/livez, /readyz]
console:
  reports: reports
"""
# What a support desk escalates: the last one is filed by a real run of the workflow.
PACKETS = [
    Packet(
        workflow="desk",
        text="I was charged twice for order 4417 and nobody answers my emails. "
        "I want my money back today.",
        reason="complaint",
        why="sentiment negative (0.93) and intent confidence 0.41 < threshold 0.55",
        intent="refund",
        intent_confidence=0.41,
        sentiment="negative",
        entities=({"label": "ORDER", "text": "4417"},),
        summary="Customer was double-charged for order 4417 and wants a refund today.",
        trace=[
            {
                "path": "steps[0]",
                "kind": "cascade",
                "name": "triage",
                "latency_ms": 4.2,
                "tokens": {"input": 24, "output": 0},
                "decision": {"taken": "human", "why": "confidence 0.41 < threshold 0.55"},
                "children": [
                    {
                        "path": "steps[0].cascade.tiers[0]",
                        "kind": "skill",
                        "name": "intent",
                        "latency_ms": 3.9,
                        "tokens": {"input": 24, "output": 0},
                        "output": {"label": "refund", "confidence": 0.41},
                    }
                ],
            }
        ],
    ),
    Packet(
        workflow="desk",
        text="my new card never arrived and I am travelling on Friday",
        reason="intent unclear",
        why="confidence 0.38 < threshold 0.5",
        intent="card",
        intent_confidence=0.38,
        sentiment="neutral",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    """The server's base URL, its folder, and how to stop it."""

    url: str
    folder: Path
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def inbox_url(self) -> str:
        return f"sqlite:///{self.folder / 'inbox.db'}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def seed_ledger(folder: Path, days: int = 14) -> None:
    """Runs over the last ``days`` days: some escalated, with latencies and costs."""
    ledger = Ledger(f"sqlite:///{folder / 'ledger.db'}")
    now = datetime.now(UTC)
    rows = []
    for day in range(days):
        at = now - timedelta(days=day)
        for n in range(6 + day % 4):
            rid = f"seed-{day}-{n}"
            escalated = n < 1 + day % 3
            latency = 8.0 + 3 * n + day
            rows += [
                LedgerRow(rid, "steps[0]", "desk", "intent", "skill", at, model="intent",
                          tokens_in=20 + n, latency_ms=latency, compute_s=latency / 1000,
                          cost_nusd=900 + 40 * n),
                LedgerRow(rid, "", "desk", "", "run", at, tokens_in=20 + n, latency_ms=latency,
                          cost_nusd=900 + 40 * n,
                          decision="escalated" if escalated else "completed"),
            ]  # fmt: skip
    ledger.append(rows)
    ledger.close()


def start(folder: Path, monkeypatch: object) -> RunningServer:
    """Write the config and data in ``folder``, start the server, wait until it is ready."""
    monkeypatch.setenv(KEYS_ENV, f"ana:{ANA_KEY},ben:{BEN_KEY}")  # type: ignore[attr-defined]
    config = write_server(folder, AUTH)
    (folder / "reports").mkdir()
    (folder / "reports" / "spend.html").write_text(
        "<!doctype html><title>spend</title><h1>Spend report</h1>", encoding="utf-8"
    )
    seed_ledger(folder)
    inbox = Inbox(f"sqlite:///{folder / 'inbox.db'}")
    for packet in PACKETS:
        inbox.add(packet)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    else:
        raise RuntimeError("the console test server did not become ready in 60 s")
    # One real escalation, filed by the workflow itself.
    run = httpx.post(
        f"{url}/v1/workflows/desk/run", json={"text": "hello there, anyone?"},
        headers={"Authorization": f"Bearer {ANA_KEY}"},
    )  # fmt: skip
    run.raise_for_status()
    return RunningServer(url, folder, server, thread)
