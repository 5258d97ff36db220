"""Whether a generated record is what its JSON schema asks for (many servers ignore it).

A small check of the schema subset the skills send: an object whose ``properties`` each
give a ``type`` (string, number, integer, boolean, array, object, null, or a list of
them) or an ``enum``; every property is required, as the request says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "number": (int, float), "integer": (int,), "boolean": (bool,),
    "array": (list,), "object": (dict,), "null": (type(None),),
}  # fmt: skip


def record_problems(schema: Mapping[str, Any], record: Any) -> list[str]:
    """What in ``record`` breaks ``schema``: missing keys, wrong types, values off the enum."""
    if not isinstance(record, dict):
        return [f"the output is a {type(record).__name__}, not a JSON object"]
    problems = []
    for key, spec in dict(schema.get("properties", {})).items():
        if key not in record:
            problems.append(f"{key!r} is missing")
            continue
        value = record[key]
        if "enum" in spec and value not in spec["enum"]:
            problems.append(f"{key!r} is {value!r}, not one of {spec['enum']}")
            continue
        kinds = spec.get("type")
        names = [kinds] if isinstance(kinds, str) else list(kinds or [])
        wanted = tuple(t for n in names for t in _TYPES.get(n, ()))
        is_bool = isinstance(value, bool) and "boolean" not in names
        if wanted and (not isinstance(value, wanted) or is_bool):
            problems.append(f"{key!r} is a {type(value).__name__}, not {' or '.join(names)}")
    return problems
