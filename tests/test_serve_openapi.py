"""The OpenAPI spec: committed as docs/openapi.json, current, and served behind the keys."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from serve_doubles import write_server
from slmstack.cli.app import app as cli
from slmstack.serve import create_app, openapi_document

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"
REGENERATE = "slmstack serve --openapi docs/openapi.json"


def _as_json(spec: dict) -> dict:
    return json.loads(json.dumps(spec))  # int keys (status codes) become strings, as in the file


def test_the_committed_spec_is_current():
    assert COMMITTED.is_file(), f"docs/openapi.json is missing; write it with `{REGENERATE}`"
    committed = json.loads(COMMITTED.read_text())
    assert committed == _as_json(openapi_document()), (
        f"docs/openapi.json is out of date with the routes; regenerate it with `{REGENERATE}`"
    )


def test_the_spec_documents_every_route_whatever_the_config_serves(tmp_path):
    spec = _as_json(openapi_document())
    served = create_app(write_server(tmp_path)).openapi()
    assert served["paths"].keys() == spec["paths"].keys()  # names are path parameters
    assert {
        "/livez",
        "/readyz",
        "/v1/models",
        "/v1/skills/{name}/predict",
        "/v1/workflows/{name}/run",
        "/v1/chat/completions",
        "/metrics",
    } <= set(spec["paths"])
    predict = spec["paths"]["/v1/skills/{name}/predict"]["post"]
    assert {"404", "413", "422", "429", "503", "504"} <= set(predict["responses"])
    assert spec["paths"]["/livez"]["get"]["security"] == []  # public in the committed spec
    assert "security" not in spec["paths"]["/metrics"]["get"]  # the global Bearer applies
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_the_cli_writes_the_spec(tmp_path):
    target = tmp_path / "spec" / "openapi.json"
    result = CliRunner().invoke(cli, ["serve", "--openapi", str(target)])
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text()) == _as_json(openapi_document())


def test_the_served_spec_needs_a_key_and_shows_the_configs_public_routes(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMSTACK_TEST_KEYS", "ops:test-key-0123456789abcdef")
    config = write_server(
        tmp_path, "auth: {keys_env: SLMSTACK_TEST_KEYS, public: [/livez, /openapi.json]}\n"
    )
    client = TestClient(create_app(config))
    served = client.get("/openapi.json")
    assert served.status_code == 200  # public in this config
    paths = served.json()["paths"]
    assert paths["/livez"]["get"]["security"] == []
    assert "security" not in paths["/readyz"]["get"]  # not public here: needs the key
    locked = write_server(tmp_path / "locked", "auth: {keys_env: SLMSTACK_TEST_KEYS}\n")
    assert TestClient(create_app(locked)).get("/openapi.json").status_code == 401
    open_server = TestClient(create_app(write_server(tmp_path / "open")))
    assert "securitySchemes" not in open_server.get("/openapi.json").json().get("components", {})
