"""Two server processes (``slmstack serve --workers 2``) sharing one PostgreSQL ledger and inbox.

A second process fires a burst of workflow requests; afterwards (SIGTERM, which flushes
each worker's ledger buffer) every accepted request is in the ledger exactly once, every
escalated one is in the inbox exactly once, nothing else is, and both workers served.

The workflow uses ``LanguageDetector`` (a registered skill, found through the entry
points in every worker process; the tests' doubles would only exist in the parent).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from databases import _postgres_database
from slmstack import Example, LanguageDetector
from slmstack.costs import Ledger
from slmstack.workflows.inbox import Inbox
from test_serve_app import _free_port, _start_server, _wait_ready

N = 80  # requests in the burst

LANGS = {
    "en": ["where is my card", "I want a refund please", "my password does not work"],
    "fr": ["où est ma carte", "je veux un remboursement", "mon mot de passe ne marche pas"],
    "de": ["wo ist meine Karte", "ich möchte eine Rückerstattung", "mein Passwort geht nicht"],
}
TEXTS = [t for texts in LANGS.values() for t in texts] + ["ok", "hmm", "card?"]

WORKFLOW = """\
name: desk
skills:
  lang: {skill}
steps:
  - cascade:
      threshold: 0.9
      tiers:
        - lang
        - escalate: {{reason: language unclear, message: A colleague will answer.}}
"""

CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys
    import httpx

    async def main(url, texts, n):
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(limits=limits, timeout=60, trust_env=False) as client:
            async def one(i):
                r = await client.post(f"{url}/v1/workflows/desk/run",
                                      json={"text": texts[i % len(texts)]})
                if r.status_code != 200:
                    return [r.status_code, None, None, None]
                body = r.json()
                return [200, body["request_id"], body["results"][0]["status"], None]

            return await asyncio.gather(*(one(i) for i in range(n)))

    print(json.dumps(asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])))))
    """
)


@pytest.fixture
def pg_urls():
    ledger = _postgres_database()
    inbox = _postgres_database()
    try:
        yield next(ledger), next(inbox)
    finally:
        for gen in (ledger, inbox):
            gen.close()


@pytest.mark.slow
def test_two_workers_share_one_postgres_ledger_and_inbox(tmp_path: Path, pg_urls):
    ledger_url, inbox_url = pg_urls
    examples = [Example(t, lang) for lang, texts in LANGS.items() for t in texts]
    LanguageDetector().fit(examples).save(tmp_path / "lang")
    (tmp_path / "desk.yaml").write_text(WORKFLOW.format(skill=tmp_path / "lang"))
    config = tmp_path / "serve.yaml"
    config.write_text(
        "workflows: {desk: desk.yaml}\n"
        f"ledger: {ledger_url}\ninbox: {inbox_url}\n"
        "shutdown: {grace_s: 0.2, drain_timeout_s: 20}\n"
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start_server(config, port, "--workers", "2")
    try:
        _wait_ready(url, proc)
        done = subprocess.run(
            [sys.executable, "-c", CLIENT, url, json.dumps(TEXTS), str(N)],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        answers = json.loads(done.stdout)
        proc.send_signal(signal.SIGTERM)
        proc.wait(90)
    except Exception as exc:
        raise AssertionError((tmp_path / "server.log").read_text()) from exc
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [a[0] for a in answers] == [200] * N, (tmp_path / "server.log").read_text()
    accepted = [f"{rid}:0" for _, rid, _, _ in answers]
    escalated = [f"{rid}:0" for _, rid, status, _ in answers if status == "escalated"]
    assert len(set(accepted)) == N and escalated, "the burst must escalate some requests"
    rows = Ledger(ledger_url, create=False).rows()
    runs = Counter(r.request_id for r in rows if r.kind == "run" and r.workflow == "desk")
    assert sorted(runs) == sorted(accepted) and set(runs.values()) == {1}  # none lost, none twice
    items = Inbox(inbox_url).list(limit=10 * N)
    keys = Counter(item.key for item in items)
    assert sorted(keys) == sorted(escalated) and set(keys.values()) == {1}
