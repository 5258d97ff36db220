"""``slmstack schema workflow``: JSON Schemas of the configuration files, for editors."""

from __future__ import annotations

import json
import sys

import typer

app = typer.Typer(help="JSON Schemas of the configuration files.", no_args_is_help=True)


@app.command("workflow")
def workflow() -> None:
    """Print the JSON Schema of workflow YAML (the same as docs/workflow.schema.json).

    Save it and point your editor at it, e.g. with a first line
    `# yaml-language-server: $schema=workflow.schema.json`.
    """
    from slmstack.workflows.schema import workflow_schema

    sys.stdout.write(json.dumps(workflow_schema(), indent=2, ensure_ascii=False) + "\n")
