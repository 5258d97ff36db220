"""Per-key rate limits shared by worker processes (``slmstack.serve.rates``)."""

from __future__ import annotations

import multiprocessing
import time

import pytest
from fastapi.testclient import TestClient

from databases import db_url  # noqa: F401  (fixture: a SQLite file and a PostgreSQL database)
from serve_doubles import write_server
from slmstack.errors import ConfigError
from slmstack.serve import create_app
from slmstack.serve.rates import SharedRateLimiter, store_url

KEY = "k-ops-0123456789abcdef"


class Clock:
    """One clock for every limiter of a test, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_two_limiters_on_one_store_grant_the_limit_once_in_all(db_url):  # noqa: F811
    clock = Clock()
    workers = [SharedRateLimiter(db_url, 6, clock=clock) for _ in range(2)]
    passed = [w.check("ops") is None for _ in range(6) for w in workers]
    assert sum(passed) == 6  # a burst of one minute's allowance, not two
    wait = workers[1].check("ops")
    assert wait == pytest.approx(10.0)  # 60 s / 6 requests: the next one in 10 s
    assert workers[0].check("bot") is None  # every key has its own bucket
    clock.now += 10.0
    assert workers[1].check("ops") is None
    assert workers[0].check("ops") == pytest.approx(10.0)
    for w in workers:
        w.close()


def _hammer(url: str, seconds: float, out: multiprocessing.Queue) -> None:
    limiter = SharedRateLimiter(url, 30)
    passed = calls = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        calls += 1
        passed += limiter.check("ops") is None
    out.put((passed, calls))


def test_two_worker_processes_hitting_one_sqlite_store_get_the_limit_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'rates.db'}"
    SharedRateLimiter(url, 30).close()  # the table, before the race
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(url, 1.5, out)) for _ in range(2)]
    start = time.monotonic()
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    elapsed = time.monotonic() - start
    passed = sum(r[0] for r in results)
    assert all(r[1] > 30 for r in results), results  # both hammered past the limit
    # A burst of 30, plus 0.5 a second refilled while the processes ran.
    assert 30 <= passed <= 30 + int(elapsed * 0.5) + 1, (passed, elapsed)


def test_two_apps_with_workers_2_share_a_keys_rate_through_the_ledger_database(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("H4_RATE_KEYS", f"ops:{KEY}")
    config = write_server(
        tmp_path, "auth: {keys_env: H4_RATE_KEYS, rate_per_minute: 5}\n"
    )  # the ledger is sqlite:///ledger.db: the limits go to ledger.db.rates.db
    apps = [create_app(config, workers=2) for _ in range(2)]
    headers = {"Authorization": f"Bearer {KEY}"}
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        codes = [c.get("/v1/models", headers=headers).status_code for _ in range(4) for c in (a, b)]
    assert codes.count(200) == 5 and codes.count(429) == 3, codes
    assert (tmp_path / "ledger.db.rates.db").is_file()


def test_a_rate_store_that_fails_is_a_503_with_retry_after_not_a_500(tmp_path, monkeypatch):
    import sqlite3

    monkeypatch.setenv("H4_RATE_KEYS", f"ops:{KEY}")
    config = write_server(tmp_path, "auth: {keys_env: H4_RATE_KEYS, rate_per_minute: 50}\n")
    headers = {"Authorization": f"Bearer {KEY}"}
    with TestClient(create_app(config, workers=2), raise_server_exceptions=False) as client:
        assert client.get("/v1/models", headers=headers).status_code == 200
        store = sqlite3.connect(tmp_path / "ledger.db.rates.db")
        store.execute("ALTER TABLE slmstack_rate_limits RENAME TO away")  # every check fails
        store.commit()
        refused = client.post("/v1/skills/intent/predict", json={"text": "hi"}, headers=headers)
        store.execute("ALTER TABLE away RENAME TO slmstack_rate_limits")
        store.commit()
        store.close()
        again = client.post("/v1/skills/intent/predict", json={"text": "hi"}, headers=headers)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert "rate-limit store cannot be used now" in refused.json()["detail"]
    assert "no such table" not in refused.text  # the database's own words go to the log
    assert again.status_code == 200


def test_one_worker_keeps_its_buckets_in_process(tmp_path, monkeypatch):
    monkeypatch.setenv("H4_RATE_KEYS", f"ops:{KEY}")
    config = write_server(tmp_path, "auth: {keys_env: H4_RATE_KEYS, rate_per_minute: 5}\n")
    assert create_app(config).state.rate_limiter is None


def test_the_store_is_the_named_one_the_ledgers_database_or_an_error():
    assert store_url("sqlite:////x/r.db", None, 2) == "sqlite:////x/r.db"
    assert store_url("sqlite:////x/r.db", None, 1) == "sqlite:////x/r.db"
    assert store_url(None, "sqlite:////x/ledger.db", 1) is None
    assert store_url(None, "sqlite:////x/ledger.db", 2) == "sqlite:////x/ledger.db.rates.db"
    pg = "postgresql+psycopg://u@h/db"
    assert store_url(None, pg, 4) == pg
    with pytest.raises(ConfigError, match="--workers 2 needs a store the workers share"):
        store_url(None, None, 2)
    with pytest.raises(ConfigError, match="rate_per_minute must be > 0; got 0"):
        SharedRateLimiter("sqlite:///:memory:", 0)


@pytest.mark.parametrize("driver", ["pg8000", "nosuchdriver"])
def test_a_rate_store_that_cannot_be_opened_is_named_without_its_password(driver):
    with pytest.raises(ConfigError) as caught:
        SharedRateLimiter(f"postgresql+{driver}://app:s3cr3t-pw@db.internal/rates", 10)
    assert "s3cr3t-pw" not in str(caught.value) and "db.internal" in str(caught.value)
