"""The server under load and under fuzzing: overload from a second process, schemathesis.

Overload: ``slmstack serve`` runs in a process of its own (a slow skill behind a small
queue, a sqlite ledger); a second process fires a bounded burst of about ten times what
the server can hold at once. Only 200 and 429 (with ``Retry-After``) may come back, and
every accepted workflow request must be in the ledger exactly once (read after SIGTERM,
which flushes it).

Fuzzing: schemathesis generates valid and invalid requests from the app's own OpenAPI
spec and sends them in-process (ASGI) with a valid key (its invalid mode may also break
the key: those are 401s); no response may be a 5xx. It uses schemathesis' Python API
(``as_strategy`` with hypothesis' ``given``): the pytest plugin's ``from_fixture``
fails on pytest 9 (it sets ``node._nodeid``, which pytest 9 no longer has).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans

from serve_doubles import WORKFLOW, write_server
from slmstack.costs import Ledger
from slmstack.serve import create_app
from test_serve_app import _free_port, _start_server, _wait_ready

QUEUE = 4  # items the server's queue holds
BATCH = 2  # items per batch
BURST = 10 * (QUEUE + BATCH)  # about ten times what the server holds at once

# The load generator: a second process, an asyncio httpx client firing BURST requests at
# once (one connection each), printing (status, Retry-After, request id) per response.
CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys
    import httpx

    async def main(url, n):
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=60, trust_env=False) as client:
            async def one(i):
                r = await client.post(
                    f"{url}/v1/workflows/desk/run", json={"text": f"my card {i}"}
                )
                rid = r.json().get("request_id") if r.status_code == 200 else None
                return [r.status_code, r.headers.get("retry-after"), rid]

            return await asyncio.gather(*(one(i) for i in range(n)))

    print(json.dumps(asyncio.run(main(sys.argv[1], int(sys.argv[2])))))
    """
)


@pytest.mark.slow
def test_a_burst_of_ten_times_capacity_gets_only_200_or_429_and_a_full_ledger(tmp_path):
    extra = (
        f"limits: {{queue_size: {QUEUE}, deadline_s: 30}}\n"
        f"batching: {{max_batch: {BATCH}, max_wait_ms: 2}}\n"
        "shutdown: {grace_s: 0.2, drain_timeout_s: 20}\n"
    )
    config = write_server(tmp_path, extra, sleep_ms=100)
    # the workflow runs the slow skill, so that its queue fills
    (tmp_path / "desk.yaml").write_text(WORKFLOW.format(skill=tmp_path / "skills" / "slow"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start_server(config, port)
    log = tmp_path / "server.log"
    try:
        _wait_ready(url, proc)
        done = subprocess.run(
            [sys.executable, "-c", CLIENT, url, str(BURST)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        answers = json.loads(done.stdout)
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once its graceful shutdown (and the ledger flush) ran
        assert proc.wait(60) in (0, -signal.SIGTERM)
    except Exception as exc:
        raise AssertionError(log.read_text()) from exc
    finally:
        if proc.poll() is None:
            proc.kill()
    statuses = [status for status, _, _ in answers]
    assert len(answers) == BURST and set(statuses) <= {200, 429}, (statuses, log.read_text())
    assert 200 in statuses and 429 in statuses  # some were served, the burst overflowed
    assert all(int(retry) >= 1 for status, retry, _ in answers if status == 429)
    accepted = [f"{rid}:0" for status, _, rid in answers if status == 200]
    rows = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", create=False).rows()
    runs = [r.request_id for r in rows if r.kind == "run" and r.workflow == "desk"]
    assert sorted(runs) == sorted(accepted)  # each accepted request once, nothing else
    assert len(set(accepted)) == len(accepted)


KEY = "fuzz-key-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {KEY}"}
SERVED = {"/v1/skills/{name}/predict": "intent", "/v1/workflows/{name}/run": "desk"}
EXAMPLES = 40  # per operation: the whole fuzzing run stays within seconds


def test_no_generated_request_gets_a_5xx(tmp_path, monkeypatch):
    """Valid and invalid requests for every operation of the served spec: never a 5xx."""
    monkeypatch.setenv("SLMSTACK_FUZZ_KEYS", f"fuzz:{KEY}")
    auth = "auth: {keys_env: SLMSTACK_FUZZ_KEYS, public: [/livez]}\n"
    app = create_app(write_server(tmp_path, auth))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=HEADERS)
    failures: list[str] = []
    calls = 0

    def check(case: schemathesis.Case) -> None:
        nonlocal calls
        calls += 1
        response = case.call(headers=HEADERS)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} {case.body!r}: "
                            f"{response.status_code} {response.text[:300]}")  # fmt: skip

    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
            strategies = [operation.as_strategy(mode) for mode in modes]
            if operation.path in SERVED:  # random names are 404s: also fuzz a served model
                name = {"name": SERVED[operation.path]}
                strategies += [operation.as_strategy(m, path_parameters=name) for m in modes]
            cases = st.one_of(*strategies)
            run = settings(
                max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck),
            )(given(cases)(check))  # fmt: skip
            run()
    finally:
        shutdown_lifespans()  # schemathesis started the app's lifespan; stop it (ledger flush)
    assert calls >= 5 * EXAMPLES  # every operation was exercised
    assert not failures, "\n".join(failures)
