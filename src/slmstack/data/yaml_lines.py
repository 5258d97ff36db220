"""The line of every path of a YAML document, for error messages that point at the file.

Workflows, serve configs and rule packs are validated by pydantic, whose errors name a
path (``steps[2].threshold``); this map turns that path into the line a user edits. A key
given twice in one mapping is refused here, because YAML would silently keep the last.
"""

from __future__ import annotations

import yaml

from slmstack.errors import ConfigError


def line_map(node: yaml.Node, source: object) -> dict[str, int]:
    """``{"steps[2].threshold": 14, ...}`` for the composed document ``node``.

    ``source`` names the file in the duplicate-key error.
    """
    out: dict[str, int] = {}
    _walk(node, "", out, source)
    return out


def _walk(node: yaml.Node, path: str, out: dict[str, int], source: object) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value in node.value:
            key = str(key_node.value)
            if key in seen:
                raise ConfigError(
                    f"{source}:{key_node.start_mark.line + 1}: {path or 'top level'}: "
                    f"duplicate key {key!r}; YAML would silently keep only the last one"
                )
            seen.add(key)
            _walk(value, f"{path}.{key}" if path else key, out, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, f"{path}[{i}]", out, source)


def yaml_problem(source: object, exc: yaml.YAMLError) -> str:
    """``wf.yaml:3: not valid YAML: expected ',' or ']'``: one line, with the line to edit.

    YAML's own message runs over four lines and names ``"<unicode string>"``, not the file.
    """
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}" if mark is not None else f"{source}"
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{where}: not valid YAML: {problem}"
