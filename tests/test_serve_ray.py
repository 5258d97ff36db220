"""``slmstack serve --engine ray``: the config's ``ray:`` section, the deployment plan, the
remote skill, and the Ray Serve application answering as the local server does.

The application tests run on the session's one local Ray (``ray_instance``, conftest.py)
with the test skill of :mod:`serve_doubles` (imported in each replica through
``ray.imports``): milliseconds per call, no torch.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import sys
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fixtures import TRAIN
from serve_doubles import Keywords, write_server
from slmstack.cli.app import app as cli
from slmstack.errors import ConfigError, DataError, DeadlineExceeded, MissingDependencyError
from slmstack.serve import create_app, load_config
from slmstack.serve.config import ServeConfig
from slmstack.serve.ray_plan import cpu_shortfall, cpus_at_start, plan_hosts
from slmstack.serve.ray_remote import HostAnswer, HostCall, RemoteSkill, SkillCard
from slmstack.types import Prediction

KEY = "test-key-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {KEY}"}
TEXTS = ["my card has not arrived", "please refund my order", "hello there"]
# Auth (keys read by the driver only), a tight ingress (2 at work, 2 waiting: the rest is
# shed), little CPU per replica (the session's Ray has 2).
EXTRA = """\
auth:
  keys_env: SLMSTACK_TEST_KEYS
  public: [/livez, /readyz]
ray:
  ingress: {max_ongoing_requests: 2, target_ongoing_requests: 1, max_queued_requests: 2,
            num_cpus: 0.25}
  models: {num_cpus: 0.25}
  retry_after_s: 3
  imports: [serve_doubles]  # registers tests.Keywords.v1 in each replica
"""
# Replicas are fresh processes: this folder on their path, for `imports:`.
RUNTIME_ENV = {"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parent)}}


# ---------------------------------------------------------------------------- config
def test_ray_section_errors_carry_their_line_and_a_did_you_mean(tmp_path):
    config = write_server(
        tmp_path,
        "ray:\n  ingress: {min_replicas: 3, max_replicas: 1}\n  models:\n    max_replica: 2\n"
        "  imports: [my-skills]\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    message = str(caught.value)
    assert "serve.yaml:8: ray.ingress: min_replicas (3) is above max_replicas (1)" in message
    assert "serve.yaml:10: ray.models.max_replica: unknown key 'max_replica'" in message
    assert "did you mean 'max_replicas'" in message
    assert "serve.yaml:11: ray.imports: 'my-skills' is not a module name" in message


def test_a_workflow_may_build_a_kind_that_ray_imports_registers(tmp_path, monkeypatch):
    """The replicas import ``ray.imports`` before they load a workflow: the driver's check too."""
    (tmp_path / "acme_ray_skills.py").write_text(
        "from slmstack import registry\nfrom serve_doubles import Keywords\n\n"
        "registry.skills.register('tests.RayImported.v1')(type('RayImported', (Keywords,), {}))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "train.csv").write_text("text,label\nmy card,card\n")
    (tmp_path / "wf.yaml").write_text(
        "skills:\n  x: {kind: tests.RayImported.v1, train: train.csv}\nsteps:\n  - template: hi\n"
    )
    (tmp_path / "serve.yaml").write_text(
        "workflows: {wf: wf.yaml}\nray: {imports: [acme_ray_skills]}\n"
    )
    with pytest.raises(ConfigError, match="unknown skill kind 'tests.RayImported.v1'"):
        load_config(tmp_path / "serve.yaml")  # the local server does not read `ray:`
    config = load_config(tmp_path / "serve.yaml", ray_imports=True)
    assert plan_hosts(config) == []  # built in the ingress, as the local server builds it


def test_the_local_server_reads_the_same_config_and_ignores_ray(tmp_path):
    config = load_config(write_server(tmp_path, "ray: {models: {max_replicas: 4}}\n"))
    assert config.ray.models.autoscaled and not config.ray.ingress.autoscaled
    assert config.ray.ingress.max_queued_requests == 1024  # never unbounded by default


# ---------------------------------------------------------------------------- plan
def _saved(folder: Path, base: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    body = {"skill": "tests.Keywords.v1", "provenance": {"base": base}}
    (folder / "config.json").write_text(json.dumps(body))
    return folder


def test_one_deployment_per_base_model_shared_by_its_skills(tmp_path):
    minilm = {"ref": "minilm", "sha256": "ab12cd34" * 8}
    intent = _saved(tmp_path / "intent", minilm)
    _saved(tmp_path / "topic", minilm)
    _saved(tmp_path / "tone", {"ref": "e5-small", "sha256": "ff00" * 16})
    _saved(tmp_path / "lang", {})  # no base: a deployment of its own
    (tmp_path / "wf.yaml").write_text(  # a workflow's skill by path joins its base's host
        "skills:\n  t: {path: topic}\n  l: lang\n"
        "  trained: {kind: slmstack.TextClassifier.v1, train: d.csv}\n"
        "steps:\n  - template: hi\n"
    )
    (tmp_path / "serve.yaml").write_text(
        "skills: {intent: intent, tone: tone}\nworkflows: {wf: wf.yaml}\n"
    )
    plans = plan_hosts(load_config(tmp_path / "serve.yaml"))
    assert [(p.name, p.base, [f.name for f in p.folders]) for p in plans] == [
        ("base-minilm-ab12cd34", "minilm@ab12cd34", ["intent", "topic"]),
        ("base-e5-small-ff00ff00", "e5-small@ff00ff00", ["tone"]),
        ("skill-lang", "", ["lang"]),
    ]
    assert plans[0].folders[0] == intent


def test_a_workflow_skill_folder_that_is_missing_is_named(tmp_path):
    _saved(tmp_path / "intent", {})
    (tmp_path / "wf.yaml").write_text("skills: {x: nowhere}\nsteps:\n  - template: hi\n")
    (tmp_path / "serve.yaml").write_text("skills: {intent: intent}\nworkflows: {wf: wf.yaml}\n")
    with pytest.raises(ConfigError, match=r"wf.yaml: skills.x: .*nowhere is not a saved skill"):
        plan_hosts(load_config(tmp_path / "serve.yaml"))


def test_a_workflow_skill_entry_of_the_wrong_shape_is_named_not_a_crash(tmp_path):
    (tmp_path / "wf.yaml").write_text("skills:\n  x: [a, b]\nsteps:\n  - template: hi\n")
    # Built in Python (build_application / deploy take one): no load_config checked the file.
    config = ServeConfig.model_validate({"workflows": {"wf": "wf.yaml"}}, context={"base": tmp_path})
    with pytest.raises(ConfigError, match=r"wf.yaml: skills.x: \['a', 'b'\] is not a skill entry"):
        plan_hosts(config)


def test_a_config_that_needs_more_cpus_than_the_cluster_is_named_with_the_sum(tmp_path):
    _saved(tmp_path / "intent", {"ref": "minilm", "sha256": "ab" * 32})
    _saved(tmp_path / "lang", {})
    (tmp_path / "serve.yaml").write_text(
        "skills: {intent: intent, lang: lang}\nray: {models: {min_replicas: 2, max_replicas: 2}}\n"
    )
    config = load_config(tmp_path / "serve.yaml")
    plans = plan_hosts(config)
    assert cpus_at_start(config, plans) == 2 * 2 * 1.0 + 0.5  # 2 bases x 2 replicas, ingress
    assert cpu_shortfall(config, plans, available=4.5) == ""
    short = cpu_shortfall(config, plans, available=4)
    assert "reserves 4.5 CPUs at start, and the Ray cluster has 4" in short
    assert "2 skill deployment(s)" in short and "Lower ray.models.num_cpus" in short


def test_a_replica_larger_than_every_node_is_named_though_the_sum_fits(tmp_path):
    """Eight 2-CPU nodes have 16 CPUs, and still no place for one 3-CPU replica."""
    _saved(tmp_path / "intent", {"ref": "minilm", "sha256": "ab" * 32})
    (tmp_path / "serve.yaml").write_text("skills: {intent: intent}\nray: {models: {num_cpus: 3}}\n")
    config = load_config(tmp_path / "serve.yaml")
    plans = plan_hosts(config)
    assert cpu_shortfall(config, plans, available=16) == ""  # the node sizes not known
    short = cpu_shortfall(config, plans, available=16, largest_node=2)
    assert "ray.models.num_cpus 3 CPUs, and the largest node of the Ray cluster has 2" in short
    assert "Lower ray.models.num_cpus to 2 or less" in short
    assert cpu_shortfall(config, plans, available=16, largest_node=4) == ""


def test_deploy_refuses_a_config_the_local_ray_cannot_place(ray_instance, tmp_path):
    """Ray Serve would wait for ever for replicas it cannot place; refused before it starts."""
    from slmstack.serve.ray_engine import deploy

    config = write_server(tmp_path, "ray: {models: {num_cpus: 3}}\n")  # the session's Ray has 2
    with pytest.raises(ConfigError, match=r"reserves 3.5 CPUs at start, and the Ray cluster has 2"):
        deploy(config, port=_free_port())


def test_a_signal_while_ray_serve_still_waits_for_replicas_stops_the_wait(monkeypatch, tmp_path):
    """Ray Serve can wait for ever (a joined cluster that never adds the CPUs): SIGTERM ends it."""
    pytest.importorskip("ray.serve")
    import os
    import signal
    import time

    from ray import serve

    from slmstack.serve import ray_engine

    deleted: list[str] = []

    def waits_for_ever(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        raise AssertionError("the signal did not end the wait")

    monkeypatch.setattr(ray_engine, "deploy", waits_for_ever)
    monkeypatch.setattr(ray_engine.ray_cluster, "connect", lambda ray, address: False)
    monkeypatch.setattr(serve, "delete", deleted.append)
    before = signal.getsignal(signal.SIGTERM)
    start = time.monotonic()
    ray_engine.serve_on_ray(write_server(tmp_path), address="auto")
    assert time.monotonic() - start < 10
    assert deleted == [ray_engine.APP_NAME]  # what was deployed is taken down
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("address", [None, "10.0.0.9:6379"])
def test_stopping_takes_down_serve_only_on_a_ray_started_here(monkeypatch, tmp_path, address):
    """A joined cluster's Serve may run other applications: stopping deletes only ours."""
    pytest.importorskip("ray.serve")
    import os
    import signal
    import threading

    import ray
    from ray import serve

    from slmstack.serve import ray_engine

    done: list[str] = []

    def deployed(*args, **kwargs):  # up at once; SIGTERM a moment later
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()

    monkeypatch.setattr(ray_engine, "deploy", deployed)
    monkeypatch.setattr(ray_engine.ray_cluster, "connect", lambda ray, address: True)
    monkeypatch.setattr(serve, "delete", lambda name: done.append(f"delete {name}"))
    monkeypatch.setattr(serve, "shutdown", lambda: done.append("serve.shutdown"))
    monkeypatch.setattr(ray, "shutdown", lambda: done.append("ray.shutdown"))
    ray_engine.serve_on_ray(write_server(tmp_path), address=address)
    if address is None:  # a local Ray started for the server: all of it goes
        assert done == [f"delete {ray_engine.APP_NAME}", "serve.shutdown", "ray.shutdown"]
    else:  # the cluster's Serve and its other applications stay; the driver disconnects
        assert done == [f"delete {ray_engine.APP_NAME}", "ray.shutdown"]


def test_a_failed_start_on_a_joined_cluster_deletes_what_it_deployed(monkeypatch, tmp_path):
    """A replica that fails to load must not keep retrying on a cluster that outlives us."""
    pytest.importorskip("ray.serve")
    import ray
    from ray import serve

    from slmstack.serve import ray_engine

    done: list[str] = []

    def fails(*args, **kwargs):
        raise ConfigError("the Ray Serve application did not start: a skill failed to load")

    monkeypatch.setattr(ray_engine, "deploy", fails)
    monkeypatch.setattr(ray_engine.ray_cluster, "connect", lambda ray, address: True)
    monkeypatch.setattr(serve, "delete", lambda name: done.append(f"delete {name}"))
    monkeypatch.setattr(serve, "shutdown", lambda: done.append("serve.shutdown"))
    monkeypatch.setattr(ray, "shutdown", lambda: done.append("ray.shutdown"))
    with pytest.raises(ConfigError, match="did not start"):
        ray_engine.serve_on_ray(write_server(tmp_path), address="10.0.0.9:6379")
    assert done == [f"delete {ray_engine.APP_NAME}", "ray.shutdown"]


# ---------------------------------------------------------------------------- remote skill
class _Response:
    cancelled: ClassVar[list[_Response]] = []

    def __init__(self, outcome):
        self.outcome = outcome

    def cancel(self):
        _Response.cancelled.append(self)

    def result(self, timeout_s=None):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


class _Handle:
    """A deployment handle double: ``predict.remote(call)`` answers ``outcome(call)``."""

    def __init__(self, outcome):
        self.calls: list[HostCall] = []
        handle = self

        class _Method:
            def remote(self, call):
                handle.calls.append(call)
                return _Response(outcome(call))

        self.predict = _Method()


CARD = SkillCard("tests.Keywords.v1", frozenset({"label"}), ("card", "refund"), ())


def _remote(outcome) -> tuple[RemoteSkill, _Handle]:
    handle = _Handle(outcome)
    return RemoteSkill(handle, "/skills/intent", CARD, timeout_s=2.0, retry_after_s=5.0), handle


def test_remote_skill_predicts_through_its_handle_and_looks_like_the_skill():
    skill, handle = _remote(lambda call: HostAnswer([Prediction(label="card")] * len(call.texts)))
    assert [p.label for p in skill.predict(["a", "b"])] == ["card", "card"]
    assert handle.calls == [HostCall("/skills/intent", ["a", "b"])]
    assert skill.produces == {"label"} and skill.classes_ == ["card", "refund"]


def test_remote_skill_raises_the_skills_own_error_and_deadlines():
    skill, _ = _remote(lambda call: HostAnswer(error=DataError("text #0 is empty")))
    with pytest.raises(DataError, match="text #0 is empty"):
        skill.predict(["x"])
    late, _ = _remote(lambda call: TimeoutError())
    _Response.cancelled.clear()
    with pytest.raises(DeadlineExceeded, match="did not answer within 2 s"):
        late.predict(["x"])
    # The caller has its 504: the host drops the call rather than run it for no one.
    assert len(_Response.cancelled) == 1


def test_a_call_shed_by_the_hosts_queue_is_a_429_with_retry_after():
    pytest.importorskip("ray.serve")
    from ray.serve.exceptions import BackPressureError

    from slmstack.errors import Overloaded

    skill, _ = _remote(lambda call: BackPressureError(num_queued_requests=8, max_queued_requests=8))
    with pytest.raises(Overloaded, match="max_queued_requests") as caught:
        skill.predict(["x"])
    assert caught.value.retry_after_s == 5.0  # the config's, as Ray gave none


# ---------------------------------------------------------------------------- skill host
def test_a_skill_host_runs_each_skill_once_per_batch_and_isolates_bad_input(tmp_path):
    pytest.importorskip("ray.serve")
    from slmstack.serve.ray_deployments import SkillHost

    Keywords().fit(TRAIN).save(tmp_path / "intent")
    Keywords(refuse="BAD").fit(TRAIN).save(tmp_path / "picky")
    intent, picky = str(tmp_path / "intent"), str(tmp_path / "picky")
    host = SkillHost([intent, picky], max_batch=8, max_wait_s=0.001, threads=1)
    assert host.card(intent).classes == tuple(Keywords().fit(TRAIN).classes_)
    Keywords.batches.clear()
    answers = host._run([
        HostCall(intent, TEXTS[:2]), HostCall(picky, ["my card"]),
        HostCall(intent, TEXTS[2:]), HostCall(picky, ["a BAD one"]),
    ])  # fmt: skip
    assert Keywords.batches[:1] == [3]  # intent: one predict for both of its calls
    assert [len(a.predictions) for a in answers[:3]] == [2, 1, 1]
    assert [p.label for p in answers[0].predictions] == ["card", "refund"]
    assert answers[1].error is None  # the good caller of the picky skill is answered...
    assert isinstance(answers[3].error, DataError)  # ...and only the bad one fails


# ---------------------------------------------------------------------------- no ray
def test_missing_ray_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if `ray` were not installed
    from slmstack.serve.ray_engine import serve_on_ray

    config = write_server(tmp_path)
    with pytest.raises(MissingDependencyError, match=r"pip install 'slmstack\[ray\]'"):
        serve_on_ray(config)
    res = CliRunner().invoke(cli, ["serve", str(config), "--engine", "ray"])
    assert res.exit_code != 0 and "slmstack[ray]" in res.output


def test_cli_refuses_workers_and_addresses_that_do_not_fit_the_engine(tmp_path):
    config = str(write_server(tmp_path))
    res = CliRunner().invoke(cli, ["serve", config, "--engine", "ray", "--workers", "2"])
    assert res.exit_code != 0 and "ray.ingress" in res.output
    res = CliRunner().invoke(cli, ["serve", config, "--ray-address", "x:1"])
    assert res.exit_code != 0 and "--ray-address goes with --engine ray" in res.output


# ---------------------------------------------------------------------------- on Ray
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def on_ray(ray_instance, tmp_path_factory):
    """The test config served on Ray Serve (and its folder); taken down at the end."""
    from ray import serve

    from slmstack.serve.ray_engine import APP_NAME, deploy

    folder = tmp_path_factory.mktemp("ray-serve")
    config = write_server(folder, EXTRA, sleep_ms=300)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLMSTACK_TEST_KEYS", f"ops:{KEY}")  # read here, in the driver only
        port = _free_port()
        deploy(config, port=port, runtime_env=RUNTIME_ENV)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield folder, client
    finally:
        serve.delete(APP_NAME)
        serve.shutdown()


def _stable(value):
    """``value`` without what differs from call to call (ids, times, costs)."""
    drop = {"request_id", "id", "created", "latency_ms", "cost", "packet_id"}
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


REQUESTS = [
    ("POST", "/v1/skills/intent/predict", {"texts": TEXTS}),
    ("POST", "/v1/skills/intent/predict", {"text": TEXTS[1]}),
    ("POST", "/v1/workflows/desk/run", {"texts": TEXTS}),
    ("POST", "/v1/chat/completions",
     {"model": "desk", "messages": [{"role": "user", "content": TEXTS[0]}]}),
    ("GET", "/v1/models", None),
    ("POST", "/v1/skills/intnet/predict", {"text": "x"}),
    ("POST", "/v1/skills/intent/predict", {"texts": []}),
]  # fmt: skip


def test_the_ray_engine_answers_the_same_requests_as_the_local_server(on_ray, monkeypatch):
    folder, remote = on_ray
    monkeypatch.setenv("SLMSTACK_TEST_KEYS", f"ops:{KEY}")
    (folder / "local").mkdir(exist_ok=True)
    local_config = write_server(folder / "local", EXTRA, sleep_ms=300)
    with TestClient(create_app(local_config)) as local:
        for method, path, body in REQUESTS:
            want = local.request(method, path, json=body, headers=HEADERS)
            got = remote.request(method, path, json=body, headers=HEADERS)
            assert got.status_code == want.status_code, (path, got.text)
            assert _stable(got.json()) == _stable(want.json()), path
        assert remote.get("/v1/models").status_code == 401  # the same auth, keys from the driver
        assert remote.get("/readyz").json() == {"ready": True, "draining": False}
    run = remote.post("/v1/workflows/desk/run", json={"text": TEXTS[2]}, headers=HEADERS).json()
    assert run["results"][0]["status"] == "escalated"  # filed to the config's inbox
    from slmstack.workflows import Inbox

    packet = Inbox(f"sqlite:///{folder / 'inbox.db'}").get(
        run["results"][0]["escalation"]["packet_id"]
    )
    assert packet.text == TEXTS[2] and packet.key == f"{run['request_id']}:0"


def test_overload_is_shed_with_429_and_retry_after(on_ray):
    _, client = on_ray

    def one(i: int) -> httpx.Response:
        return client.post("/v1/skills/slow/predict", json={"text": f"card {i}"}, headers=HEADERS)

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(one, range(12)))
    statuses = sorted(r.status_code for r in responses)
    shed = [r for r in responses if r.status_code == 429]
    assert statuses.count(200) >= 2 and shed, statuses  # 2 at work + 2 queued at most
    assert {r.headers["retry-after"] for r in shed} == {"3"}  # ray.retry_after_s
    assert statuses.count(200) + len(shed) == 12
