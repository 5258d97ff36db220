"""The JSON Schema of a workflow file, built from the pydantic specs that validate it.

Editors use it to complete and check workflow YAML (the YAML language server reads a
``# yaml-language-server: $schema=...`` comment). It is generated, never written by
hand: the top level comes from ``WorkflowSpec``, each step kind from its ``Spec`` in the
:data:`~slmstack.workflows.base.step_kinds` registry, so a new kind appears in it with
no change here. ``docs/workflow.schema.json`` is this output, kept current by a test.

The schema checks shape only (keys, types, required fields). What needs the skills, such
as unknown skill names, labels a route cannot get or templates that name later steps, is
checked by :func:`~slmstack.workflows.load_workflow`.

Example:
    >>> from slmstack.workflows.schema import workflow_schema
    >>> len(workflow_schema()["properties"]), "ledger" in workflow_schema()["properties"]
    (10, True)
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

import slmstack.workflows.steps  # noqa: F401  (registers the built-in step kinds)
from slmstack.workflows.base import STEP_MARK, step_kinds
from slmstack.workflows.loader import SKILL_MARK, WorkflowSpec
from slmstack.workflows.skillspec import SkillSpec

_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_REF = "#/$defs/{model}"


def _model(model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    """``model``'s schema, its nested models moved into ``defs``."""
    schema = model.model_json_schema(ref_template=_REF)
    defs.update(schema.pop("$defs", {}))
    return schema


def _replace_marks(node: Any, marks: list[tuple[dict[str, Any], dict[str, Any]]]) -> Any:
    """``node`` with every marked schema replaced by its stand-in (keeping a title)."""
    if isinstance(node, dict):
        for mark, schema in marks:
            if node.get("$comment") == mark["$comment"]:
                return schema | {k: v for k, v in node.items() if k != "$comment"}
        return {k: _replace_marks(v, marks) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_marks(v, marks) for v in node]
    return node


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""


def workflow_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a workflow YAML file."""
    defs: dict[str, Any] = {}
    top = _model(WorkflowSpec, defs)
    defs["skill-entry"] = _model(SkillSpec, defs)
    variants: list[dict[str, Any]] = [
        {"type": "string", "description": "A skill step: the name of a skill (`- intent`)."},
        {
            "type": "array",
            "items": {"$ref": "#/$defs/step"},
            "minItems": 1,
            "description": "A sequence: steps run in order (`- [sentiment, entities]`).",
        },
    ]
    for kind in step_kinds.names():
        cls = step_kinds.get(kind)
        name = f"{kind}-step"
        defs[name] = _model(cls.Spec, defs)
        body: dict[str, Any] = {"$ref": f"#/$defs/{name}"}
        short = defs[name]["properties"][cls.shorthand] if cls.shorthand else None
        if short is not None and short.get("type") != "object":
            # `skill: intent` stands for `skill: {use: intent}`. The loader reads a mapping
            # as the full body, so a shorthand field that is itself a mapping has no short form.
            body = {"anyOf": [body, short]}
        variants.append(
            {
                "type": "object",
                "title": kind,
                "description": _first_line(cls.__doc__),
                "properties": {kind: body},
                "required": [kind],
                "additionalProperties": False,
            }
        )
    defs["step"] = {
        "description": "A step: a mapping with one key, its kind; a string is a skill step "
        "and a list a sequence.",
        "anyOf": variants,
    }
    skill_entry = {
        "anyOf": [
            {"type": "string", "description": "A saved skill folder, relative to the file."},
            {"$ref": "#/$defs/skill-entry"},
        ]
    }
    marks: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (STEP_MARK, {"$ref": "#/$defs/step"}),
        (SKILL_MARK, skill_entry),
    ]
    top, defs = _replace_marks(top, marks), _replace_marks(defs, marks)
    return {
        "$schema": _DIALECT,
        "title": "slmstack workflow",
        "description": "A workflow file for `slmstack run` and `load_workflow` "
        "(docs/workflows.md).",
        **{k: v for k, v in top.items() if k != "title" and k != "description"},
        "$defs": dict(sorted(defs.items())),
    }


__all__ = ["workflow_schema"]
