"""Rule packs: YAML files of obligations, validated once with line-numbered errors.

A pack::

    name: nda
    description: Non-disclosure agreement review
    rules:
      - id: nda-4
        title: Limited use
        hypothesis: "Receiving Party shall not use any Confidential Information for ..."
        require: entailed          # entailed | not_contradicted | absent
        severity: high             # low | medium | high | critical
        source: "ContractNLI nda-4"
      - id: vat-shown              # a field rule: checked on an extractor's record
        check: present             # present | due_within_days | sum_equals
        fields: [tax]
        severity: high
        source: "Directive 2006/112/EC Art. 226(10)"

A rule with ``hypothesis`` is judged by the NLI model on the document's text; a rule with
``check`` is an exact test on the fields a :class:`~slmstack.FieldExtractor` read. Packs
that ship: ``nda`` (the 17 ContractNLI hypotheses), ``gdpr-art28`` and ``payment-terms``;
:func:`load_pack` takes one of those names or a path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from slmstack.data.utf8 import read_utf8
from slmstack.data.yaml_lines import line_map, yaml_problem
from slmstack.errors import ConfigError, RulePackError

Verdict = Literal["entailed", "contradicted", "not_mentioned"]
Requirement = Literal["entailed", "not_contradicted", "absent"]
Severity = Literal["low", "medium", "high", "critical"]
Flag = Literal["ok", "missing", "violated", "needs_review"]
FieldCheck = Literal["present", "due_within_days", "sum_equals"]

SHIPPED = ("nda", "gdpr-art28", "payment-terms")

# The flag each verdict gives under each requirement. `absent` rules name something a
# document must not contain, so finding it is the violation and its opposite is fine.
FLAGS: Mapping[str, Mapping[str, Flag]] = {
    "entailed": {"entailed": "ok", "not_mentioned": "missing", "contradicted": "violated"},
    "not_contradicted": {"entailed": "ok", "not_mentioned": "ok", "contradicted": "violated"},
    "absent": {"entailed": "violated", "not_mentioned": "ok", "contradicted": "ok"},
}


class _RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1)
    title: str = ""
    severity: Severity = "medium"
    source: str = Field(min_length=1)  # the article or section cited; a flag must say why


class NLIRule(_RuleBase):
    """A hypothesis the document must entail, must not contradict, or must not contain."""

    hypothesis: str = Field(min_length=3)
    require: Requirement


class FieldRule(_RuleBase):
    """An exact check on extracted fields (dates as ISO strings, amounts as decimals)."""

    check: FieldCheck
    fields: list[str] = Field(min_length=1)
    days: int | None = Field(default=None, ge=0)  # due_within_days: the longest term allowed
    total: str | None = None  # sum_equals: the field the parts must add up to
    tolerance: float = Field(default=0.01, ge=0)  # sum_equals: rounding allowed

    @model_validator(mode="after")
    def _arguments(self) -> FieldRule:
        if self.check == "due_within_days" and (self.days is None or len(self.fields) != 2):
            raise ValueError("due_within_days needs `fields: [ISSUE_DATE, DUE_DATE]` and `days: N`")
        if self.check == "sum_equals" and self.total is None:
            raise ValueError("sum_equals needs `total: FIELD` (the parts are `fields`)")
        return self


Rule = NLIRule | FieldRule


class _PackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = ""
    rules: list[Any] = Field(min_length=1)  # validated one by one, for their own paths


@dataclass(frozen=True)
class RulePack:
    """A validated rule pack."""

    name: str
    rules: tuple[Rule, ...]
    description: str = ""
    source: str = ""  # the file it came from

    @property
    def nli_rules(self) -> tuple[NLIRule, ...]:
        """The rules the NLI model judges."""
        return tuple(r for r in self.rules if isinstance(r, NLIRule))

    @property
    def field_rules(self) -> tuple[FieldRule, ...]:
        """The rules checked on extracted fields."""
        return tuple(r for r in self.rules if isinstance(r, FieldRule))


def load_pack(pack: str | Path) -> RulePack:
    """Read and validate a pack: a shipped name (``"nda"``) or a YAML file.

    Raises:
        RulePackError: every problem of the file at once, each with its line.
        ConfigError: the file does not exist or is not YAML.

    Example:
        >>> [r.id for r in load_pack("gdpr-art28").rules][:2]
        ['art28-3-a', 'art28-3-b']
    """
    if isinstance(pack, str) and pack in SHIPPED:
        ref = resources.files("slmstack.compliance").joinpath(f"packs/{pack}.yaml")
        return parse_pack(ref.read_text(encoding="utf-8"), f"<shipped pack {pack}>")
    path = Path(pack)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"rule pack {path} {what}; pass a YAML file or a shipped pack ({', '.join(SHIPPED)})"
        )
    return parse_pack(read_utf8(path), str(path))


def parse_pack(text: str, source: str) -> RulePack:
    """Validate the YAML text of a pack; ``source`` names it in errors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_problem(source, exc)) from exc
    if not isinstance(raw, dict) or node is None:
        raise ConfigError(f"{source}: a rule pack is a mapping with `name:` and `rules:`")
    lines = line_map(node, source)
    problems: list[tuple[str, str]] = []
    try:
        spec = _PackSpec.model_validate(raw)
    except ValidationError as exc:
        problems = _problems(exc, "", _PackSpec)
        raise _error(source, lines, problems) from None
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(spec.rules):
        path = f"rules[{i}]"
        rule = _rule(item, path, problems)
        if rule is None:
            continue
        if rule.id in seen:
            problems.append(
                (f"{path}.id", f"duplicate rule id {rule.id!r} (also rules[{seen[rule.id]}])")
            )
        seen.setdefault(rule.id, i)
        rules.append(rule)
    if problems:
        raise _error(source, lines, problems)
    return RulePack(spec.name, tuple(rules), spec.description, source)


def _rule(item: Any, path: str, problems: list[tuple[str, str]]) -> Rule | None:
    if not isinstance(item, dict):
        problems.append((path, f"a rule is a mapping with an id; got {type(item).__name__}"))
        return None
    if ("hypothesis" in item) == ("check" in item):
        typos = [] if "hypothesis" in item else _kind_typos(item, path)
        kind = ("a rule needs exactly one of `hypothesis:` (judged on the text) or `check:` "
                "(on extracted fields)")  # fmt: skip
        problems.extend(typos or [(path, kind)])
        return None
    model: type[NLIRule] | type[FieldRule] = NLIRule if "hypothesis" in item else FieldRule
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        problems.extend(_problems(exc, path, model))
        return None


def _kind_typos(item: Mapping[str, Any], path: str) -> list[tuple[str, str]]:
    """A misspelt ``hypothesis:`` or ``check:`` key, which decides the rule's kind."""
    import difflib

    known = {*NLIRule.model_fields, *FieldRule.model_fields}
    out = []
    for key in map(str, item):
        close = difflib.get_close_matches(key, ["hypothesis", "check"], n=1, cutoff=0.6)
        if key not in known and close:
            out.append((f"{path}.{key}", f"unknown key {key!r} (did you mean {close[0]!r}?)"))
    return out


def _problems(exc: ValidationError, base: str, model: type[BaseModel]) -> list[tuple[str, str]]:
    import difflib

    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            known = list(model.model_fields)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
            message = f"unknown key {loc[-1]!r}{hint}"
        elif err["type"] == "missing":
            message, loc = f"missing required key {loc[-1]!r}", loc[:-1]
        elif err["type"] == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            message = f"{err.get('input')!r} is not allowed; use one of {expected}"
        else:
            message = f"{err['msg'].removeprefix('Value error, ')} (got {err.get('input')!r})"
        path = base
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        out.append((path, message))
    return out


def _error(source: str, lines: Mapping[str, int], problems: Sequence[tuple[str, str]]) -> Exception:
    located = []
    for path, message in problems:
        probe = path
        while probe and probe not in lines:
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        where = f"{source}:{lines[probe]}: " if probe else f"{source}: "
        located.append((where, path or "top level", message))
    return RulePackError(source, located)


__all__ = [
    "FLAGS",
    "SHIPPED",
    "FieldRule",
    "Flag",
    "NLIRule",
    "Requirement",
    "Rule",
    "RulePack",
    "Severity",
    "Verdict",
    "load_pack",
    "parse_pack",
]
