"""Prometheus metrics: the series, their labels (bounded by config, never by clients), /metrics."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from serve_pieces import KEY, FakeBatcher, pieces_app
from slmstack.serve.auth import ApiKeys
from slmstack.serve.metrics import Metrics
from slmstack.types import Prediction, Usage
from slmstack.workflows.trace import Escalation, Result, StepTrace


def samples(metrics_or_text, name):
    """{labels-tuple: value} of the samples called ``name``."""
    text = (
        metrics_or_text
        if isinstance(metrics_or_text, str)
        else metrics_or_text.render()[0].decode()
    )
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_each_series_counts_what_it_is_given():
    m = Metrics()
    m.observe_request("/v1/models", "GET", 200, 0.003)
    m.observe_request("/v1/models", "GET", 200, 0.004)
    m.observe_request("/v1/models", "GET", 429, 0.0001)
    m.observe_step("support", "intent", 0.002)
    m.observe_batch("skill:intent", 48, 0.01)
    m.set_queue_depth("skill:intent", 5)
    m.count_escalation("support", "complaint")
    m.add_usage("skill:gen", 120, 30, 1_500_000_000)
    m.add_usage("skill:gen", 0, 0, 250_000_000)

    requests = samples(m, "slmstack_http_requests_total")
    assert requests[(("method", "GET"), ("route", "/v1/models"), ("status", "200"))] == 2
    assert requests[(("method", "GET"), ("route", "/v1/models"), ("status", "429"))] == 1
    latency = samples(m, "slmstack_http_request_duration_seconds_bucket")
    assert latency[(("le", "0.005"), ("method", "GET"), ("route", "/v1/models"))] == 3
    assert latency[(("le", "0.002"), ("method", "GET"), ("route", "/v1/models"))] == 1
    assert samples(m, "slmstack_step_duration_seconds_count") == {
        (("step", "intent"), ("workflow", "support")): 1
    }
    sizes = samples(m, "slmstack_batch_size_bucket")
    assert sizes[(("le", "32.0"), ("target", "skill:intent"))] == 0
    assert sizes[(("le", "64.0"), ("target", "skill:intent"))] == 1
    assert samples(m, "slmstack_queue_depth") == {(("target", "skill:intent"),): 5}
    assert samples(m, "slmstack_escalations_total") == {
        (("reason", "complaint"), ("workflow", "support")): 1
    }
    tokens = samples(m, "slmstack_tokens_total")
    assert tokens[(("direction", "in"), ("target", "skill:gen"))] == 120
    assert tokens[(("direction", "out"), ("target", "skill:gen"))] == 30
    # Integer nano-dollars in, dollars out.
    assert samples(m, "slmstack_cost_dollars_total") == {(("target", "skill:gen"),): 1.75}


def test_each_metrics_has_its_own_registry():
    a, b = Metrics(), Metrics()
    a.count_escalation("w", "r")
    assert samples(b, "slmstack_escalations_total") == {}
    content_type = a.render()[1]
    assert content_type.startswith("text/plain")


def test_negative_usage_is_refused():
    with pytest.raises(ValueError, match="must not be negative; got tokens_in=-1"):
        Metrics().add_usage("skill:x", -1, 0, 0)


def test_observe_run_records_steps_escalation_and_usage():
    m = Metrics()
    leaf = StepTrace("steps[0].cascade[0]", "skill", "intent", latency_ms=2.0, usage=Usage(10, 0))
    root = StepTrace(
        "steps[0]", "cascade", "cascade", latency_ms=5.0, usage=Usage(10, 0), children=[leaf]
    )
    result = Result(
        input="where is my parcel",
        output=Prediction(label="human"),
        outputs={},
        status="escalated",
        escalation=Escalation(to="human", reason="unsure", why="confidence 0.3 < 0.5"),
        trace=[root],
        latency_ms=6.0,
    )
    m.observe_run("support", result, cost_nano=42)
    steps = samples(m, "slmstack_step_duration_seconds_sum")
    assert steps[(("step", "intent"), ("workflow", "support"))] == pytest.approx(0.002)
    assert steps[(("step", "cascade"), ("workflow", "support"))] == pytest.approx(0.005)
    assert samples(m, "slmstack_escalations_total") == {
        (("reason", "unsure"), ("workflow", "support")): 1
    }
    assert (
        samples(m, "slmstack_tokens_total")[(("direction", "in"), ("target", "workflow:support"))]
        == 10
    )
    assert samples(m, "slmstack_cost_dollars_total")[(("target", "workflow:support"),)] == 42e-9


def test_middleware_labels_by_route_template_never_the_raw_path():
    app = pieces_app(keys=ApiKeys({"ops": KEY}))
    client = TestClient(app)
    auth = {"Authorization": f"Bearer {KEY}"}
    for name in ("a", "b", "c"):
        assert client.post(f"/v1/skills/{name}/predict", headers=auth).status_code == 200
    client.get("/no/such/path/123", headers=auth)  # 404
    client.get("/no/such/path/456", headers=auth)
    client.post("/v1/skills/a/predict")  # refused by auth: still counted, as 401
    client.request("BREW", "/metrics", headers=auth)  # an invented method
    client.get("/v1/inbox/7", headers=auth)  # a route of an included router (prefix)
    counts = samples(app.state.serve.metrics, "slmstack_http_requests_total")
    predict = "/v1/skills/{name}/predict"
    assert counts[(("method", "POST"), ("route", predict), ("status", "200"))] == 3
    assert counts[(("method", "POST"), ("route", predict), ("status", "401"))] == 1
    assert counts[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 2
    assert counts[(("method", "other"), ("route", "/metrics"), ("status", "405"))] == 1
    assert counts[(("method", "GET"), ("route", "/v1/inbox/{packet_id}"), ("status", "404"))] == 1
    routes = {dict(k)["route"] for k in counts}
    assert routes == {predict, "unmatched", "/metrics", "/v1/inbox/{packet_id}"}


def test_a_client_that_leaves_mid_upload_is_counted_as_499_not_as_a_server_error(tmp_path):
    import asyncio

    from serve_doubles import write_server
    from slmstack.serve import create_app

    app = create_app(write_server(tmp_path))  # the whole middleware stack; no model loaded
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/skills/a/predict",
             "raw_path": b"/v1/skills/a/predict", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}  # fmt: skip
    parts = iter([{"type": "http.request", "body": b'{"te', "more_body": True},
                  {"type": "http.disconnect"}])  # fmt: skip
    sent: list[dict] = []

    async def receive():
        return next(parts)

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent == []  # nobody to answer
    counts = samples(app.state.serve.metrics, "slmstack_http_requests_total")
    predict = "/v1/skills/{name}/predict"
    assert counts == {(("method", "POST"), ("route", predict), ("status", "499")): 1}


def test_metrics_route_serves_the_page_with_current_queue_depths():
    app = pieces_app(keys=ApiKeys({"ops": KEY}))
    app.state.serve.batchers = {"skill:intent": FakeBatcher(depth=7)}
    client = TestClient(app)
    assert client.get("/metrics").status_code == 401  # behind the keys like every route
    r = client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert samples(r.text, "slmstack_queue_depth") == {(("target", "skill:intent"),): 7}
    app.state.serve.batchers["skill:intent"].depth = 0
    r = client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert samples(r.text, "slmstack_queue_depth") == {(("target", "skill:intent"),): 0}


def test_batch_observer_is_an_on_batch_callback():
    m = Metrics()
    on_batch = m.batch_observer("workflow:support")
    on_batch(3, 0.02)
    assert samples(m, "slmstack_batch_size_count") == {(("target", "workflow:support"),): 1}


def test_worker_processes_share_one_page_in_multiprocess_mode(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR, a scrape of any worker sees every worker's counts."""
    worker = textwrap.dedent(
        """
        from slmstack.serve.metrics import Metrics
        m = Metrics()
        m.observe_request("/v1/models", "GET", 200, 0.001)
        m.set_queue_depth("skill:intent", 2)
        m.add_usage("skill:gen", 5, 1, 3_000_000_000)
        """
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": ""}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", worker], env=env, check=True, timeout=60)
    page = subprocess.run(
        [sys.executable, "-c", "from slmstack.serve.metrics import Metrics; "
         "import sys; sys.stdout.write(Metrics().render()[0].decode())"],
        env=env, check=True, timeout=60, capture_output=True, text=True,
    ).stdout  # fmt: skip
    counts = samples(page, "slmstack_http_requests_total")
    assert counts[(("method", "GET"), ("route", "/v1/models"), ("status", "200"))] == 2
    assert samples(page, "slmstack_cost_dollars_total") == {(("target", "skill:gen"),): 6.0}
