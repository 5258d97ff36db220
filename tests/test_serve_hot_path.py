"""The hot path answers prediction requests exactly as FastAPI's routes do.

Every request below goes to two apps built from one config: the server as shipped, and
the same server with :class:`HotPath` taken out, so that FastAPI routes everything. The
answers must agree in status, headers that matter and body (request ids and measured
times aside), for well-formed requests, for every refusal, and for errors raised inside
the handler.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serve_doubles import write_server
from slmstack.serve import create_app
from slmstack.serve.hot_path import HotPath

KEY = "test-key-0123456789abcdef"
AUTH = "auth:\n  keys_env: SLMSTACK_TEST_KEYS\n  public: [/livez, /readyz]\n"
JSON = {"content-type": "application/json"}

CASES: list[tuple[str, bytes, dict[str, str]]] = [
    ("/v1/skills/intent/predict", b'{"text": "my card has not arrived"}', JSON),
    ("/v1/skills/intent/predict", b'{"texts": ["please refund", "hello there"]}', JSON),
    (
        "/v1/skills/intent/predict",
        b'{"text": "refund"}',
        {"content-type": "application/json; charset=utf-8"},
    ),
    ("/v1/skills/intent/predict", b'{"text": "refund"}', {"content-type": "text/plain"}),
    ("/v1/skills/intent/predict", b'{"text": "refund"}', {}),  # no content type: FastAPI's call
    ("/v1/skills/intent/predict", b'{"text": "a", "text": "refund"}', JSON),  # last key wins
    ("/v1/skills/intent/predict", b"\xef\xbb\xbf" + b'{"text": "refund"}', JSON),  # a BOM
    ("/v1/skills/intent/predict", b'{"text": "\\ud800"}', JSON),  # a lone surrogate
    ("/v1/skills/intent/predict", b'{"text": ""}', JSON),
    ("/v1/skills/intent/predict", b'{"text": "a", "texts": ["b"]}', JSON),
    ("/v1/skills/intent/predict", b"{}", JSON),
    ("/v1/skills/intent/predict", b'{"text": 3}', JSON),
    ("/v1/skills/intent/predict", b'{"text": "a", "extra": 1}', JSON),
    ("/v1/skills/intent/predict", b'{"text": NaN}', JSON),
    ("/v1/skills/intent/predict", b"not json", JSON),
    ("/v1/skills/intent/predict", b"", JSON),
    ("/v1/skills/intent/predict", b'{"texts": []}', JSON),
    ("/v1/skills/intent/predict", b'{"texts": ["a", "b", "c", "d", "e", "f"]}', JSON),
    ("/v1/skills/nosuch/predict", b'{"text": "refund"}', JSON),  # NotServed, raised inside
    ("/v1/skills/desk/predict", b'{"text": "refund"}', JSON),  # a workflow's name
    ("/v1/skills/slow/predict", b'{"text": "boom please"}', JSON),  # the skill's DataError
    ("/v1/workflows/desk/run", b'{"text": "my card has not arrived"}', JSON),
    ("/v1/workflows/desk/run", b'{"text": "hello there", "trace": false}', JSON),
    ("/v1/workflows/desk/run", b'{"text": "hello", "trace": 1}', JSON),  # StrictBool
    ("/v1/workflows/intent/run", b'{"text": "refund"}', JSON),
]


def _clients(tmp_path, monkeypatch) -> tuple[TestClient, TestClient]:
    monkeypatch.setenv("SLMSTACK_TEST_KEYS", f"ops:{KEY}")
    config = write_server(tmp_path, AUTH + "limits: {max_items: 5}\n", refuse="boom")
    hot = create_app(config)
    plain = create_app(config)
    plain.user_middleware = [m for m in plain.user_middleware if m.cls is not HotPath]
    assert len(plain.user_middleware) == len(hot.user_middleware) - 1
    return TestClient(hot), TestClient(plain)


MEASURED = frozenset({"latency_ms", "cost_nusd", "cost_usd", "request_id", "packet_id"})


def _scrub(value: Any) -> Any:
    """``value`` with what is measured or drawn per request (times, costs, ids) zeroed."""
    if isinstance(value, dict):
        return {k: 0 if k in MEASURED else _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _comparable(response) -> tuple[int, str | None, str | None, Any]:
    try:
        body: Any = _scrub(response.json())
    except json.JSONDecodeError:
        body = response.text
    headers = response.headers
    return response.status_code, headers.get("retry-after"), headers.get("content-type"), body


@pytest.mark.parametrize(("path", "body", "headers"), CASES)
def test_the_hot_path_answers_as_fastapi_does(tmp_path, monkeypatch, path, body, headers):
    hot, plain = _clients(tmp_path, monkeypatch)
    auth = {"Authorization": f"Bearer {KEY}", **headers}
    with hot, plain:
        fast = hot.post(path, content=body, headers=auth)
        slow = plain.post(path, content=body, headers=auth)
    assert _comparable(fast) == _comparable(slow)


def test_the_hot_path_is_taken_with_auth_metrics_and_the_ledger_key(tmp_path, monkeypatch):
    from slmstack.costs import Ledger
    from slmstack.serve.routes import skills

    routed: list[str] = []
    real = skills.predict_results

    async def spy(state, name, body, key):  # what FastAPI's route calls; the hot path does not
        routed.append(name)
        return await real(state, name, body, key)

    monkeypatch.setattr(skills, "predict_results", spy)
    hot, _ = _clients(tmp_path, monkeypatch)
    auth = {"Authorization": f"Bearer {KEY}"}
    with hot:
        refused = hot.post("/v1/skills/intent/predict", json={"text": "refund"})
        answer = hot.post("/v1/skills/intent/predict", json={"text": "refund"}, headers=auth)
        assert routed == []  # answered by the hot path
        bom = b"\xef\xbb\xbf" + b'{"text": "refund"}'  # Python's json reads it, pydantic not
        hot.post("/v1/skills/intent/predict", content=bom, headers={**auth, **JSON})
        assert routed == ["intent"]  # so FastAPI's route answered it
        metrics = hot.get("/metrics", headers=auth).text
    assert refused.status_code == 401  # auth is outside the hot path
    assert answer.status_code == 200
    assert answer.json()["results"][0]["prediction"]["label"] == "refund"
    request_id = answer.json()["request_id"]
    rows = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", create=False).rows()
    mine = [r for r in rows if r.request_id == f"{request_id}:0"]
    assert mine and {r.api_key_id for r in mine} == {"ops"}
    line = next(
        ln for ln in metrics.splitlines()
        if ln.startswith("slmstack_http_requests_total{")
        and 'route="/v1/skills/{name}/predict"' in ln and 'status="200"' in ln
    )  # fmt: skip
    assert float(line.rsplit(" ", 1)[1]) == 2.0
