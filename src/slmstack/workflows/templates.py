"""Text templates over step outputs: ``"Sentiment {sentiment.label}, about {entities.spans}"``.

A placeholder names the input or a step id and optionally a field:

* ``{input}``: the text the workflow was given;
* ``{ID}``: the step's output as one readable string;
* ``{ID.label}``, ``{ID.confidence}``, ``{ID.text}``, ``{ID.spans}``, ``{ID.abstained}``;
* ``{ID.data}`` (JSON) or ``{ID.data.KEY}``.

``{{`` and ``}}`` are literal braces. Only these paths are allowed (no attribute access
as in ``str.format``), so a template from a YAML file cannot reach into Python objects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slmstack.errors import ConfigError
from slmstack.types import Prediction
from slmstack.workflows.base import CheckEnv, did_you_mean

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][\w-]*$")
FIELDS = ("label", "confidence", "text", "spans", "abstained", "data")


@dataclass(frozen=True)
class Ref:
    """One placeholder: ``step`` (or ``"input"``), ``field`` and optional ``key`` in data."""

    step: str
    field: str | None = None
    key: str | None = None

    def __str__(self) -> str:
        return "{" + ".".join(x for x in (self.step, self.field, self.key) if x) + "}"


def parse(template: str) -> list[str | Ref]:
    """Split a template into literal text and references; raise on a malformed one."""
    parts: list[str | Ref] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        parts.append(template[pos : m.start()])
        pos = m.end()
        if m.group(0) in ("{{", "}}"):
            parts.append(m.group(0)[0])
            continue
        parts.append(_ref(m.group(1), template))
    rest = template[pos:]
    if "{" in rest or "}" in rest:
        raise ConfigError(
            f"unbalanced brace in template {template!r}; write {{{{ or }}}} for a literal brace"
        )
    parts.append(rest)
    return [p for p in parts if p != ""]


def _ref(body: str, template: str) -> Ref:
    bits = body.strip().split(".")
    if not all(_NAME.match(b) for b in bits) or len(bits) > 3:
        raise ConfigError(
            f"bad placeholder {{{body}}} in template {template!r}; use {{input}}, {{ID}}, "
            "{ID.FIELD} or {ID.data.KEY}"
        )
    step, field, key = (
        bits[0],
        bits[1] if len(bits) > 1 else None,
        bits[2] if len(bits) > 2 else None,
    )
    if step == "input" and field is not None:
        raise ConfigError(f"{{input}} has no fields; got {{{body}}} in template {template!r}")
    if field is not None and field not in FIELDS:
        raise ConfigError(
            f"unknown field {field!r} in {{{body}}}{did_you_mean(field, FIELDS)}; "
            f"fields are {', '.join(FIELDS)}"
        )
    if key is not None and field != "data":
        raise ConfigError(f"only data has keys: write {{{step}.data.{key}}}, not {{{body}}}")
    return Ref(step, field, key)


def check_refs(parts: list[str | Ref], env: CheckEnv, path: str) -> None:
    """Every referenced step must be defined earlier and fill the referenced field."""
    for ref in parts:
        if not isinstance(ref, Ref) or ref.step == "input":
            continue
        shape = env.defined.get(ref.step)
        if shape is None:
            env.error(path, f"template refers to {ref} but {env.no_id(ref.step)}")
            continue
        if ref.field and shape.fields is not None and ref.field not in shape.fields:
            env.error(
                path,
                f"type mismatch: {ref} needs '{ref.field}', but step {ref.step!r} produces "
                f"{', '.join(sorted(shape.fields))}",
            )


def readable(pred: Prediction) -> str:
    """A prediction as one string: text, else label, else spans, else data."""
    if pred.text is not None:
        return pred.text
    if pred.label is not None:
        return pred.label
    if pred.spans:
        return format_spans(pred)
    if pred.abstained is not None:
        return f"(abstained: {pred.abstained})"
    return json.dumps(dict(pred.data), ensure_ascii=False, default=str) if pred.data else ""


def format_spans(pred: Prediction) -> str:
    """``"ORG: Acme; DATE: 3 May"``, or ``"none"``."""
    return "; ".join(f"{s.label}: {s.text}" for s in pred.spans) or "none"


def value(ref: Ref, text: str, outputs: Mapping[str, Prediction]) -> Any:
    """The raw value a reference points at (lists and numbers stay as they are)."""
    if ref.step == "input":
        return text
    pred = outputs.get(ref.step)
    if pred is None:
        return None
    if ref.field is None:
        return readable(pred)
    if ref.field == "spans":
        return [{"label": s.label, "text": s.text} for s in pred.spans]
    if ref.field == "data":
        return dict(pred.data) if ref.key is None else pred.data.get(ref.key)
    return getattr(pred, ref.field)


def render(parts: list[str | Ref], text: str, outputs: Mapping[str, Prediction]) -> str:
    """Fill the template; a step that did not run renders as an empty string."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        pred = outputs.get(part.step)
        if part.field == "spans" and pred is not None:
            out.append(format_spans(pred))
            continue
        val = value(part, text, outputs)
        if val is None:
            out.append("")
        elif isinstance(val, float):
            out.append(f"{val:.2f}")
        elif isinstance(val, dict | list):
            out.append(json.dumps(val, ensure_ascii=False, default=str))
        else:
            out.append(str(val))
    return "".join(out)
