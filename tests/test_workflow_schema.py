"""`slmstack schema workflow`: generated from the specs, and docs/workflow.schema.json is it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from slmstack.cli.app import app
from slmstack.workflows import step_kinds

ROOT = Path(__file__).resolve().parents[1]


def cli_schema() -> str:
    result = CliRunner().invoke(app, ["schema", "workflow"])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_committed_schema_is_current():
    committed = (ROOT / "docs" / "workflow.schema.json").read_text(encoding="utf-8")
    assert committed == cli_schema(), (
        "docs/workflow.schema.json is out of date; regenerate it with "
        "`slmstack schema workflow > docs/workflow.schema.json`"
    )


def test_schema_covers_every_step_kind_and_forbids_unknown_keys():
    schema = json.loads(cli_schema())
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["additionalProperties"] is False and schema["required"] == ["steps"]
    defs = schema["$defs"]
    kinds = {v["title"] for v in defs["step"]["anyOf"] if v.get("type") == "object"}
    assert kinds == set(step_kinds.names())
    for kind in kinds:
        assert defs[f"{kind}-step"]["additionalProperties"] is False
    # Child steps point back at the step definition, so editors check nested graphs too.
    assert defs["cascade-step"]["properties"]["tiers"]["items"] == {"$ref": "#/$defs/step"}
    assert defs["route-step"]["properties"]["default"]["$ref"] == "#/$defs/step"
    assert schema["properties"]["steps"]["items"] == {"$ref": "#/$defs/step"}
    assert "slmstack:" not in json.dumps(schema)  # every marker was replaced


def test_every_key_of_the_examples_is_in_the_schema():
    """A light check without a JSON Schema validator: the examples' keys are all known."""
    schema = json.loads(cli_schema())
    defs = schema["$defs"]
    top = set(schema["properties"])
    entry = set(defs["skill-entry"]["properties"])

    def check_step(step):
        if isinstance(step, str):
            return
        if isinstance(step, list):
            for s in step:
                check_step(s)
            return
        ((kind, body),) = step.items()
        spec = defs[f"{kind}-step"]
        if isinstance(body, dict):
            assert set(body) <= set(spec["properties"]), (kind, body)
            for key in ("tiers", "steps"):
                for s in body.get(key, []):
                    check_step(s)
            for s in body.get("branches", {}).values():
                check_step(s)
            if "default" in body:
                check_step(body["default"])

    files = sorted(ROOT.glob("examples/*/workflow*.yaml"))
    assert files
    for path in files:
        # BaseLoader: every scalar a string, so `on:` stays "on" (YAML 1.2, as the loader).
        wf = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
        assert set(wf) <= top, path
        for value in wf.get("skills", {}).values():
            assert isinstance(value, str) or set(value) <= entry, (path, value)
        for step in wf["steps"]:
            check_step(step)
        for steps in wf.get("blocks", {}).values():
            check_step(steps)
