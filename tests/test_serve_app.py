"""``slmstack serve``: readiness, predictions and runs with trace and cost, batching, drain."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from serve_doubles import Keywords, write_server
from slmstack.costs import Ledger
from slmstack.errors import ConfigError
from slmstack.serve import ServeState, create_app, load_config
from slmstack.serve.schemas import ModelList, PredictResponse, RunResponse
from slmstack.workflows import Inbox, load_workflow

KEY = "test-key-0123456789abcdef"
AUTH = """\
auth:
  keys_env: SLMSTACK_TEST_KEYS
  public: [/livez, /readyz]
"""
HEADERS = {"Authorization": f"Bearer {KEY}"}
TEXTS = ["my card has not arrived", "please refund my order", "hello there"]


@pytest.fixture(autouse=True)
def _fresh_keywords():
    Keywords.batches.clear()
    Keywords.gate.clear()
    Keywords.running.clear()
    yield
    Keywords.gate.set()  # never leave a gated predict waiting


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("SLMSTACK_TEST_KEYS", f"ops:{KEY}")


def ledger_rows(folder: Path):
    return Ledger(f"sqlite:///{folder / 'ledger.db'}", create=False).rows()


def test_readyz_is_false_until_every_model_is_loaded(tmp_path):
    app = create_app(write_server(tmp_path))
    before = TestClient(app)  # no lifespan: nothing loaded
    assert before.get("/livez").json() == {"status": "alive"}
    response = before.get("/readyz")
    assert response.status_code == 503 and response.json() == {"ready": False, "draining": False}
    assert before.head("/readyz").status_code == 503  # a load balancer's HEAD probe
    with TestClient(app) as client:
        assert client.get("/readyz").json() == {"ready": True, "draining": False}
        assert client.head("/readyz").status_code == 200
        assert client.head("/livez").status_code == 200
        assert set(app.state.serve.batchers) == {"skill:intent", "workflow:desk"}
    assert app.state.serve.draining  # shut down: not ready again
    assert TestClient(app).get("/readyz").status_code == 503


def test_predict_one_text_or_a_batch_with_cost_in_the_ledger_per_key(tmp_path, keys):
    app = create_app(write_server(tmp_path, AUTH))
    with TestClient(app) as client:
        one = client.post("/v1/skills/intent/predict", json={"text": TEXTS[0]}, headers=HEADERS)
        batch = client.post("/v1/skills/intent/predict", json={"texts": TEXTS}, headers=HEADERS)
    assert one.status_code == 200 and batch.status_code == 200
    body = PredictResponse.model_validate(batch.json())  # the documented shape
    assert [r.prediction.label for r in body.results] == ["card", "refund", "card"]
    assert one.json()["results"][0]["prediction"]["label"] == "card"
    first = body.results[0]
    assert first.prediction.usage.input_tokens == 5 and first.cost.tokens_in == 5
    assert first.cost.cost_usd == first.cost.cost_nusd / 1e9
    rows = [r for r in ledger_rows(tmp_path) if r.request_id.startswith(body.request_id)]
    assert sorted({r.request_id for r in rows}) == [f"{body.request_id}:{i}" for i in range(3)]
    assert {r.api_key_id for r in rows} == {"ops"}  # each key's spend
    assert {r.workflow for r in rows} == {"skill:intent"}
    runs = {r.request_id: r for r in rows if r.kind == "run"}
    assert runs[f"{body.request_id}:0"].cost_nusd == first.cost.cost_nusd
    # A local skill is priced by its share of the batch's machine time (a fast stand-in's
    # share can round to 0 nano-dollars, so the price is checked, not its sign).
    from slmstack.costs.prices import packaged_prices, to_nano

    steps = [r for r in rows if r.kind != "run"]
    assert steps and all(r.compute_s > 0 and r.machine for r in steps)
    for r in steps:
        assert r.cost_nusd == to_nano(packaged_prices().compute_cost(r.machine, r.compute_s))


def test_workflow_results_equal_run_and_escalations_reach_the_inbox(tmp_path, keys):
    config = write_server(tmp_path, AUTH)
    app = create_app(config)
    with TestClient(app) as client:
        response = client.post("/v1/workflows/desk/run", json={"texts": TEXTS}, headers=HEADERS)
        short = client.post(
            "/v1/workflows/desk/run", json={"text": TEXTS[0], "trace": False}, headers=HEADERS
        )
    assert response.status_code == 200
    body = RunResponse.model_validate(response.json())
    alone = load_workflow(tmp_path / "desk.yaml", inbox=f"sqlite:///{tmp_path / 'alone.db'}")
    for text, got in zip(TEXTS, body.results, strict=True):
        want = alone.run(text)
        assert (got.answer, got.status, got.route) == (want.answer, want.status, want.route)
        assert got.trace is not None and len(got.trace) == len(want.trace)
    escalated = body.results[2]
    assert escalated.status == "escalated" and escalated.escalation.reason == "intent unclear"
    packet = Inbox(f"sqlite:///{tmp_path / 'inbox.db'}").get(escalated.escalation.packet_id)
    assert packet.text == TEXTS[2] and packet.key == f"{body.request_id}:2"
    assert "trace" not in short.json()["results"][0]
    rows = ledger_rows(tmp_path)
    runs = {r.request_id: r for r in rows if r.kind == "run" and r.workflow == "desk"}
    assert runs[f"{body.request_id}:2"].decision == "escalated"
    assert runs[f"{body.request_id}:0"].cost_nusd == body.results[0].cost.cost_nusd
    assert {r.api_key_id for r in rows} == {"ops"}


def test_unknown_names_are_404_and_list_what_is_served(tmp_path):
    with TestClient(create_app(write_server(tmp_path))) as client:
        missing = client.post("/v1/skills/intnet/predict", json={"text": "x"})
        crossed = client.post("/v1/skills/desk/predict", json={"text": "x"})
        models = client.get("/v1/models")
        huge = client.post("/v1/chat/completions", json={
            "model": "m" * 100_000, "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
    assert huge.status_code == 404 and len(huge.content) < 2_000  # the name is not echoed whole
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no skill 'intnet' is served (the skills are: intent)"
    assert "'desk' is one of the workflows: use /v1/workflows/desk/" in crossed.json()["detail"]
    cards = {m.id: m for m in ModelList.model_validate(models.json()).data}
    assert cards["intent"].kind == "skill" and cards["intent"].type == "tests.Keywords.v1"
    assert cards["desk"].kind == "workflow"


def test_a_skill_refusing_an_input_is_a_422_with_its_message(tmp_path):
    config = write_server(tmp_path, refuse="boom")
    with TestClient(create_app(config)) as client:
        bad = client.post("/v1/skills/slow/predict", json={"text": "card boom"})
        good = client.post("/v1/skills/slow/predict", json={"text": "card"})
    assert bad.status_code == 422 and "refused a text holding 'boom'" in bad.json()["detail"]
    assert good.status_code == 200


def test_concurrent_requests_share_one_batch(tmp_path):
    config = write_server(tmp_path, "batching: {max_wait_ms: 400}\n", gated=True)
    out: list[httpx.Response] = []
    with TestClient(create_app(config)) as client:
        first = threading.Thread(
            target=lambda: out.append(client.post("/v1/skills/slow/predict", json={"text": "x"}))
        )
        first.start()
        assert Keywords.running.wait(10)  # the first batch runs (and waits at the gate)
        threads = [
            threading.Thread(
                target=lambda t=t: out.append(
                    client.post("/v1/skills/slow/predict", json={"text": t})
                )
            )
            for t in TEXTS * 2
        ]
        for t in threads:
            t.start()
        batcher = client.app.state.serve.batchers["skill:slow"]
        deadline = time.monotonic() + 10
        while batcher.depth < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        Keywords.gate.set()
        for t in [first, *threads]:
            t.join(10)
    assert [r.status_code for r in out] == [200] * 7
    assert Keywords.batches == [1, 6]  # six requests queued behind the first: one call


def test_close_finishes_queued_work_and_writes_the_ledger(tmp_path):
    config = load_config(write_server(tmp_path, sleep_ms=50))

    async def main() -> list[object]:
        state = ServeState.create(config)
        await asyncio.to_thread(state.load)
        await state.start()
        batcher = state.batcher("skill", "slow")
        jobs = [
            asyncio.create_task(state.submit(batcher, state.calls([t], None)[1])) for t in TEXTS * 4
        ]
        await asyncio.sleep(0.01)  # queued, the first batch running
        await state.close()
        return await asyncio.gather(*jobs, return_exceptions=True)

    answers = asyncio.run(main())
    assert [type(a[0]).__name__ for a in answers] == ["SkillAnswer"] * 12  # type: ignore[index]
    runs = [r for r in ledger_rows(tmp_path) if r.kind == "run"]
    assert len(runs) == 12 and len({r.request_id for r in runs}) == 12


def test_a_ledger_that_cannot_be_written_fails_no_request_and_keeps_its_rows(tmp_path):
    """The server writes its ledgers itself, every second: never on a request's path."""
    config = write_server(tmp_path, "limits: {max_items: 300}\n")
    # No ledger in the serve config: the workflow keeps its own (written every 512 rows).
    config.write_text(config.read_text().replace("ledger: sqlite:///ledger.db\n", ""))
    flow = tmp_path / "desk.yaml"
    flow.write_text(flow.read_text() + f"ledger: sqlite:///{tmp_path / 'ledger.db'}\n")
    app = create_app(config)
    with TestClient(app) as client:
        assert client.post("/v1/workflows/desk/run", json={"text": TEXTS[0]}).status_code == 200
        app.state.serve.flush()
        ledger_db = sqlite3.connect(tmp_path / "ledger.db")
        ledger_db.execute("ALTER TABLE slmstack_ledger RENAME TO away")  # every write fails
        ledger_db.commit()
        texts = [TEXTS[i % 3] for i in range(300)]  # about 1,000 rows
        answer = client.post("/v1/workflows/desk/run", json={"texts": texts})
        assert answer.status_code == 200, answer.text
        ledger_db.execute("ALTER TABLE away RENAME TO slmstack_ledger")
        ledger_db.commit()
        ledger_db.close()
        app.state.serve.flush()
    runs = [r for r in ledger_rows(tmp_path) if r.kind == "run"]
    assert len(runs) == 301  # none lost while the table was away


def test_past_the_ledger_backlog_requests_are_refused_not_run_and_nothing_is_lost(
    tmp_path, monkeypatch
):
    import slmstack.serve.state as state_module

    monkeypatch.setattr(state_module, "LEDGER_BACKLOG", 50)
    app = create_app(write_server(tmp_path, "limits: {max_items: 300}\n"))
    with TestClient(app) as client:
        ledger_db = sqlite3.connect(tmp_path / "ledger.db")
        ledger_db.execute("ALTER TABLE slmstack_ledger RENAME TO away")  # every write fails
        ledger_db.commit()
        texts = [TEXTS[i % 3] for i in range(30)]  # about 100 rows: past the backlog
        first = client.post("/v1/workflows/desk/run", json={"texts": texts})
        assert first.status_code == 200, first.text  # accepted before the backlog grew
        Keywords.batches.clear()
        refused = client.post("/v1/workflows/desk/run", json={"text": TEXTS[0]})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert "ledger database cannot be written" in refused.json()["detail"]
        assert Keywords.batches == [], "a refused request is not run"
        ledger_db.execute("ALTER TABLE away RENAME TO slmstack_ledger")
        ledger_db.commit()
        ledger_db.close()
        app.state.serve.flush()
        again = client.post("/v1/workflows/desk/run", json={"text": TEXTS[0]})
        assert again.status_code == 200
    runs = [r for r in ledger_rows(tmp_path) if r.kind == "run"]
    assert len(runs) == 31 == len({r.request_id for r in runs})  # none lost, none twice


class _FlushFailsOnce(ServeState):
    """A state whose first flush fails with an error the ledger does not expect."""

    flushes = 0
    closed = False

    def flush(self) -> int:
        type(self).flushes += 1
        if type(self).flushes == 1:
            raise RuntimeError("the pool timed out")
        return super().flush()

    async def close(self) -> None:
        type(self).closed = True
        await super().close()


def test_a_failed_ledger_flush_stops_neither_the_flushes_nor_the_drain(tmp_path, monkeypatch):
    import slmstack.serve.app as app_module

    monkeypatch.setattr(app_module, "LEDGER_FLUSH_S", 0.01)
    config = load_config(write_server(tmp_path))
    app = create_app(config, state=_FlushFailsOnce.create(config))
    with TestClient(app) as client:
        assert client.post("/v1/skills/intent/predict", json={"text": TEXTS[0]}).status_code == 200
        deadline = time.monotonic() + 5
        while _FlushFailsOnce.flushes < 3:  # it went on after the failure
            assert time.monotonic() < deadline, "the flushes stopped"
            time.sleep(0.01)
    assert _FlushFailsOnce.closed  # the lifespan drained the batchers and wrote the ledger


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(config: Path, port: int, *args: str) -> subprocess.Popen[bytes]:
    """``slmstack serve`` in a process of its own; its output goes to ``server.log``."""
    tests = Path(__file__).parent
    code = (
        "import sys; import serve_doubles; from slmstack.cli.app import main; "
        "sys.argv = ['slmstack'] + sys.argv[1:]; main()"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-c", code, "serve", str(config), "--port", str(port),
         "--log-level", "warning", *args],
        env=env, stdout=(config.parent / "server.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("the server exited")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not get ready in 60 s")


@pytest.mark.slow
def test_sigterm_turns_readiness_false_and_finishes_requests_in_flight(tmp_path):
    extra = "shutdown: {grace_s: 1.0, drain_timeout_s: 20}\nbatching: {max_batch: 4}\n"
    config = write_server(tmp_path, extra, sleep_ms=150)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start_server(config, port)
    try:
        _wait_ready(url, proc)
        statuses: list[int] = []

        def call(text: str) -> None:
            r = httpx.post(f"{url}/v1/skills/slow/predict", json={"text": text}, timeout=30)
            statuses.append(r.status_code)

        threads = [threading.Thread(target=call, args=(f"card {i}",)) for i in range(16)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # all sent; 4 batches of 150 ms to go
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        ready = httpx.get(f"{url}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["draining"] is True
        for t in threads:
            t.join(30)
        proc.wait(30)
    except Exception as exc:
        raise AssertionError((tmp_path / "server.log").read_text()) from exc
    finally:
        if proc.poll() is None:
            proc.kill()
    assert statuses == [200] * 16, (tmp_path / "server.log").read_text()
    runs = [r for r in ledger_rows(tmp_path) if r.kind == "run"]
    assert len(runs) == 16 and len({r.request_id for r in runs}) == 16


def test_cli_reports_a_bad_config_with_its_line(tmp_path):
    config = write_server(tmp_path, "limits: {max_itemz: 3}\n")
    done = subprocess.run(
        [sys.executable, "-c", "from slmstack.cli.app import main; main()", "serve", str(config)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        "serve.yaml:7: limits.max_itemz: unknown key 'max_itemz' (did you mean 'max_items'?)"
        in done.stderr
    )


def test_config_paths_are_relative_to_the_file_and_errors_carry_lines(tmp_path):
    config = load_config(write_server(tmp_path))
    assert config.skills["intent"] == (tmp_path / "skills" / "intent").resolve()
    assert config.ledger == f"sqlite:///{(tmp_path / 'ledger.db').resolve()}"
    bad = tmp_path / "bad.yaml"
    bad.write_text("skills:\n  intent: skills/intent\n  gone: skills/nowhere\nlimits: {queue: 3}\n")
    with pytest.raises(ConfigError, match=r"has 2 errors") as info:
        load_config(bad)
    assert "bad.yaml:3: skills.gone: " in str(info.value) and "does not exist" in str(info.value)
    assert "bad.yaml:4: limits.queue: unknown key 'queue' (did you mean 'queue_size'?)" in str(
        info.value
    )
    bad.write_text("skills:\n  intent: skills/intent\nworkflows:\n  intent: desk.yaml\n")
    with pytest.raises(ConfigError, match="'intent' is both a skill and a workflow"):
        load_config(bad)
    json.dumps(config.model_dump(mode="json"))  # the config is plain data


def test_a_model_that_fails_to_load_fails_the_start(tmp_path):
    config = write_server(tmp_path)
    app = create_app(config)
    (tmp_path / "skills" / "intent" / "config.json").write_text('{"skill": "tests.Gone.v1"}')
    with pytest.raises(ConfigError, match="unknown skill 'tests.Gone.v1'"), TestClient(app):
        pass
    assert not app.state.serve.ready


def test_a_port_in_use_is_refused_before_any_model_loads(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from slmstack.cli.app import app as cli

    config = write_server(tmp_path)
    loaded = []
    monkeypatch.setattr("slmstack.serve.app.create_app", lambda *a, **k: loaded.append(1))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = CliRunner().invoke(cli, ["serve", str(config), "--port", str(port)])
    assert res.exit_code == 2 and f"port {port} on 127.0.0.1 is in use" in res.output
    assert "--port N" in res.output and not loaded
    res = CliRunner().invoke(cli, ["serve", str(config), "--host", "no-such-host.invalid"])
    assert res.exit_code == 2 and "--host 'no-such-host.invalid'" in res.output
