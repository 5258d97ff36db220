"""API keys, the auth middleware on every route, and per-key rate limits."""

from __future__ import annotations

import re
import subprocess

import pytest
from fastapi.testclient import TestClient

from serve_doubles import write_server
from serve_pieces import KEY, OTHER_KEY, WRONG_KEY, Clock, pieces_app
from slmstack.errors import ConfigError, Unauthorized
from slmstack.serve import auth as auth_module
from slmstack.serve import create_app
from slmstack.serve.asgi import route_table
from slmstack.serve.auth import ApiKeys, RateLimiter, bearer_security

KEYS = ApiKeys({"ops": KEY, "bot": OTHER_KEY})


def _settings(keys_env=None, keys_file=None, public=(), rate_per_minute=None):
    from types import SimpleNamespace

    return SimpleNamespace(
        keys_env=keys_env, keys_file=keys_file, public=public, rate_per_minute=rate_per_minute
    )


def _calls(app):
    """(method, concrete path, template) for every method of every route in the app's table."""
    for template, methods in route_table(app):
        path = re.sub(r"\{[^}]+\}", "1", template)
        for method in sorted(methods):
            yield method, path, template


def assert_every_route_locked(app, public, client=None):
    """Every route not in ``public`` answers 401 without a key and with a wrong one."""
    client = client or TestClient(app)
    checked = 0
    for method, path, template in _calls(app):
        if template in public:
            assert client.request(method, path).status_code != 401, template
            continue
        for headers in ({}, {"Authorization": f"Bearer {WRONG_KEY}"}, {"Authorization": KEY}):
            r = client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, template, headers, r.status_code)
            assert r.headers["www-authenticate"].startswith("Bearer"), template
        checked += 1
    return checked


def test_every_route_of_the_table_needs_a_key():
    public = ("/livez",)
    app = pieces_app(keys=KEYS, public=public)
    templates = {t for _, _, t in _calls(app)}
    # The table holds the routes this suite must not miss: inbox, metrics, the docs.
    assert {"/metrics", "/v1/inbox", "/v1/inbox/{packet_id}/claim", "/openapi.json"} <= templates
    assert assert_every_route_locked(app, public) >= 8


def test_every_route_of_the_served_app_needs_a_key(tmp_path, monkeypatch):
    """The real app, started (models loaded): a route added to it later is checked too."""
    monkeypatch.setenv("SLMSTACK_TEST_KEYS", f"ops:{KEY}")
    auth = "auth:\n  keys_env: SLMSTACK_TEST_KEYS\n  public: [/livez, /readyz]\n"
    app = create_app(write_server(tmp_path, auth))
    public = app.state.serve.config.public_routes
    assert public == {"/livez", "/readyz"}
    templates = {t for _, _, t in _calls(app)}
    served = {"/v1/skills/{name}/predict", "/v1/workflows/{name}/run", "/v1/models", "/metrics",
              "/v1/inbox", "/v1/inbox/{packet_id}/resolve", "/openapi.json", "/livez", "/readyz"}  # fmt: skip
    assert served <= templates
    with TestClient(app) as client:
        assert assert_every_route_locked(app, public, client) >= len(templates) - len(public)
        ok = client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200


def test_a_path_that_matches_no_route_needs_a_key_too():
    client = TestClient(pieces_app(keys=KEYS))
    assert client.get("/no/such/route").status_code == 401
    assert (
        client.get("/no/such/route", headers={"Authorization": f"Bearer {KEY}"}).status_code == 404
    )


def test_the_right_key_passes_and_names_itself_to_the_route():
    client = TestClient(pieces_app(keys=KEYS, public=("/livez",)))
    assert client.get("/whoami", headers={"Authorization": f"Bearer {KEY}"}).json() == {
        "key": "ops"
    }
    assert client.get("/whoami", headers={"authorization": f"bearer  {OTHER_KEY} "}).json() == {
        "key": "bot"
    }
    assert client.get("/livez").status_code == 200  # public: no key needed


def test_two_authorization_headers_are_refused_whichever_comes_first():
    client = TestClient(pieces_app(keys=KEYS))
    for pair in ((f"Bearer {WRONG_KEY}", f"Bearer {KEY}"), (f"Bearer {KEY}", f"Bearer {WRONG_KEY}")):
        headers = [(b"authorization", pair[0].encode()), (b"authorization", pair[1].encode())]
        r = client.get("/whoami", headers=headers)
        assert r.status_code == 400 and "2 Authorization headers" in r.json()["detail"]


def test_a_public_entry_that_names_no_route_is_refused_at_start(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMSTACK_TEST_KEYS", f"ops:{KEY}")
    auth = "auth:\n  keys_env: SLMSTACK_TEST_KEYS\n  public: [/livez, /readyz/]\n"
    with pytest.raises(ConfigError, match=r"auth.public: '/readyz/' is no route of this server "
                       r"\(did you mean '/readyz'\?\)"):  # fmt: skip
        create_app(write_server(tmp_path, auth))


def test_an_inbox_act_for_others_entry_that_names_no_key_is_refused_at_start(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("SLMSTACK_TEST_KEYS", f"ops:{KEY},helpdesk:{OTHER_KEY}")
    auth = "auth:\n  keys_env: SLMSTACK_TEST_KEYS\n  inbox_act_for_others: [helpdsk]\n"
    with pytest.raises(ConfigError, match=r"auth.inbox_act_for_others: 'helpdsk' is no key's "
                       r"name \(did you mean 'helpdesk'\?\)"):  # fmt: skip
        create_app(write_server(tmp_path, auth))
    fixed = auth.replace("helpdsk", "helpdesk")
    assert create_app(write_server(tmp_path, fixed)).state.serve.keys is not None


def test_without_auth_every_route_is_open_and_the_key_name_is_none():
    client = TestClient(pieces_app(keys=None))
    assert client.get("/whoami").json() == {"key": None}
    assert client.get("/metrics").status_code == 200


def test_401_says_what_is_wrong_and_never_echoes_the_key():
    client = TestClient(pieces_app(keys=KEYS))
    missing = client.get("/whoami")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer KEY" in missing.json()["detail"]
    wrong = client.get("/whoami", headers={"Authorization": f"Bearer {WRONG_KEY}"})
    assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert WRONG_KEY not in wrong.text
    basic = client.get("/whoami", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401 and "'Basic' scheme" in basic.json()["detail"]
    bare = client.get("/whoami", headers={"Authorization": KEY})  # the key without "Bearer"
    assert bare.status_code == 401 and KEY[:6] not in bare.text
    assert "error" not in missing.json()  # FastAPI's shape off the chat route
    chat = client.post("/v1/chat/completions", json={})  # OpenAI clients show `error`
    assert chat.status_code == 401
    assert chat.json()["error"]["type"] == "invalid_api_key"
    assert chat.json()["error"]["message"] == chat.json()["detail"]


def test_rate_limit_answers_429_with_retry_after_per_key():
    clock = Clock()
    client = TestClient(pieces_app(keys=KEYS, rate_per_minute=2, clock=clock))
    ops = {"Authorization": f"Bearer {KEY}"}
    assert [client.get("/whoami", headers=ops).status_code for _ in range(2)] == [200, 200]
    refused = client.get("/whoami", headers=ops)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "30"  # 2 a minute: one every 30 s
    assert "'ops' is over its rate of 2 requests a minute" in refused.json()["detail"]
    # Another key has its own bucket.
    assert (
        client.get("/whoami", headers={"Authorization": f"Bearer {OTHER_KEY}"}).status_code == 200
    )
    clock.now += 29.0
    assert client.get("/whoami", headers=ops).headers["retry-after"] == "1"
    clock.now += 1.0
    assert client.get("/whoami", headers=ops).status_code == 200
    # the metrics scrape needs the key but spends none of its rate
    assert [client.get("/metrics", headers=ops).status_code for _ in range(5)] == [200] * 5
    assert client.get("/metrics").status_code == 401


def test_rate_limiter_refills_continuously_up_to_its_burst():
    clock = Clock()
    limiter = RateLimiter(60, burst=2, clock=clock)
    assert [limiter.check("a"), limiter.check("a")] == [None, None]
    assert limiter.check("a") == pytest.approx(1.0)
    clock.now += 0.5
    assert limiter.check("a") == pytest.approx(0.5)  # a refused request takes no token
    clock.now += 100.0  # a long pause refills to the burst, not beyond
    assert [limiter.check("a"), limiter.check("a"), limiter.check("a")][2] is not None
    with pytest.raises(ConfigError, match="rate_per_minute must be > 0; got 0"):
        RateLimiter(0)


# ---------------------------------------------------------------------- key sources
def test_keys_from_env_and_file_together(tmp_path):
    file = tmp_path / "keys.txt"
    file.write_text(f"# who may call\n\nbot {OTHER_KEY}\n")
    env = {"SERVE_KEYS": f" ops:{KEY} , "}
    keys = ApiKeys.from_config(_settings("SERVE_KEYS", file), environ=env)
    assert keys.names == ["ops", "bot"]
    assert keys.identify(f"Bearer {OTHER_KEY}") == "bot"
    assert KEY not in repr(keys)


def test_env_variable_unset_or_empty_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"SERVE_KEYS is not set; export SERVE_KEYS="):
        ApiKeys.from_config(_settings("SERVE_KEYS"), environ={})
    with pytest.raises(ConfigError, match=r"SERVE_KEYS is empty"):
        ApiKeys.from_config(_settings("SERVE_KEYS"), environ={"SERVE_KEYS": " "})
    with pytest.raises(ConfigError, match=r"\$SERVE_KEYS: entry 2 is not `name:key`"):
        ApiKeys.from_config(
            _settings("SERVE_KEYS"), environ={"SERVE_KEYS": f"ops:{KEY},{OTHER_KEY}"}
        )
    with pytest.raises(ConfigError, match="keys_env .* and/or keys_file"):
        ApiKeys.from_config(_settings())


def test_malformed_key_file_names_file_and_line_but_not_the_key(tmp_path):
    file = tmp_path / "keys.txt"
    file.write_text(f"ops {KEY}\nbot {OTHER_KEY} extra\n")
    with pytest.raises(
        ConfigError, match=r"keys.txt:2: expected `name key` .* found 3 fields"
    ) as err:
        ApiKeys.read_file(file)
    assert OTHER_KEY not in str(err.value)
    file.write_text("ops short\n")
    with pytest.raises(
        ConfigError, match=r"keys.txt:1: the key of 'ops' must be at least 16"
    ) as err:
        ApiKeys.read_file(file)
    assert "short" not in str(err.value)
    file.write_text("uni " + "ключ" * 5 + "\n")  # a header could never carry it
    with pytest.raises(ConfigError, match="printable ASCII"):
        ApiKeys.read_file(file)
    file.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="holds no keys"):
        ApiKeys.read_file(file)
    with pytest.raises(ConfigError, match="keys_file .*missing.txt does not exist"):
        ApiKeys.from_config(_settings(keys_file=tmp_path / "missing.txt"))


def test_names_and_keys_must_be_unique(tmp_path):
    file = tmp_path / "keys.txt"
    file.write_text(f"ops {OTHER_KEY}\n")
    with pytest.raises(ConfigError, match="'ops' is also given elsewhere"):
        ApiKeys.from_config(_settings("K", file), environ={"K": f"ops:{KEY}"})
    with pytest.raises(ConfigError, match="'a' and 'b' are the same key"):
        ApiKeys({"a": KEY, "b": KEY})
    with pytest.raises(ConfigError, match="key name 'o p'"):
        ApiKeys({"o p": KEY})


def test_a_keys_file_tracked_by_git_is_refused(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    file = tmp_path / "keys.txt"
    file.write_text(f"ops {KEY}\n")
    assert ApiKeys.read_file(file).names == ["ops"]  # untracked: fine
    git("add", "keys.txt")
    with pytest.raises(ConfigError, match="tracked by git: keys must never be committed"):
        ApiKeys.read_file(file)


def test_identify_compares_against_every_key_without_early_exit(monkeypatch):
    keys = ApiKeys({f"k{i}": f"{KEY}-{i}" for i in range(5)})
    seen = []
    real = auth_module.hmac.compare_digest

    def counting(a, b):
        seen.append(len(a) == len(b) == 32)  # digests: equal lengths, so no length leak
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", counting)
    assert keys.identify(f"Bearer {KEY}-0") == "k0"  # the first key matches...
    assert seen == [True] * 5  # ...and all five are still compared
    with pytest.raises(Unauthorized, match="unknown API key"):
        keys.identify("Bearer x")


def test_bearer_security_documents_the_scheme_and_public_routes():
    app = pieces_app(keys=KEYS, public=("/livez",))
    schema = bearer_security(app.openapi(), ("/livez",))
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["security"] == [{"bearer": []}]
    assert schema["paths"]["/livez"]["get"]["security"] == []
    assert "security" not in schema["paths"]["/metrics"]["get"]
