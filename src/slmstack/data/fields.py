"""The schema a user declares for :class:`~slmstack.skills.fields.FieldExtractor`.

Example:
    >>> schema = parse_schema({"company": "text", "date": {"type": "date", "order": "DMY"},
    ...                        "total": {"type": "amount", "currency": "MYR"}})
    >>> [f.type for f in schema]
    ['text', 'date', 'amount']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from slmstack.data.normalizers import normalize_text, parse_amount, parse_date
from slmstack.errors import ConfigError, DataError

FIELD_TYPES = ("text", "date", "amount")


class FieldSpec(BaseModel):
    """One declared field.

    Attributes:
        name: the key in the output record.
        type: ``text`` (one or more whole lines, e.g. company, address), ``date``
            (normalised to ISO 8601) or ``amount`` (``Decimal`` with a currency).
        order: how numeric dates are read (``DMY``: 03/04/2024 is 3 April).
        currency: ISO 4217 code used when the document shows no currency for an amount.
        required: a record without this field is incomplete: the prediction abstains with
            ``"missing_required"`` (a workflow's cascade escalates it) and names the field
            in its warnings; the field is still reported as missing, never guessed.
        drop_code: ``text`` fields only: a bracketed registration number at the end of a
            line is not part of the value (``ACME SDN BHD (12345-X)`` gives ``ACME SDN
            BHD``), as receipts and invoices print it beside the name. ``False`` keeps
            whole lines.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: Literal["text", "date", "amount"]
    order: Literal["DMY", "MDY", "YMD"] = "DMY"  # most of the world writes day first
    currency: str | None = None
    required: bool = False
    drop_code: bool = True

    @model_validator(mode="after")
    def _drop_code_on_text_only(self) -> FieldSpec:
        if "drop_code" in self.model_fields_set and self.type != "text":
            raise ValueError(
                f"drop_code applies to text fields only; remove it from this {self.type} field"
            )
        return self


@dataclass(frozen=True)
class FieldExample:
    """A document (text, OCR lines joined by newlines) and its true field values.

    A value of ``None`` (or a field left out) means the field is not in the document.
    """

    text: str
    values: Mapping[str, str | None] = field(default_factory=dict)
    source: str = ""


def parse_schema(schema: Mapping[str, Any] | Sequence[FieldSpec]) -> list[FieldSpec]:
    """Validate a schema given as ``{name: type}`` / ``{name: {type: ..., ...}}``."""
    if not schema:
        raise ConfigError(
            "the schema declares no fields; pass e.g. {'date': 'date', 'total': 'amount'}"
        )
    if not isinstance(schema, Mapping):
        specs = list(schema)
        if not all(isinstance(s, FieldSpec) for s in specs):
            raise ConfigError("a schema list must hold FieldSpec objects")
    else:
        specs = []
        for name, decl in schema.items():
            body = {"type": decl} if isinstance(decl, str) else dict(decl or {})
            if body.get("type") not in FIELD_TYPES:
                raise ConfigError(
                    f"field {name!r} has unknown type {body.get('type')!r}; known types: "
                    f"{', '.join(FIELD_TYPES)}"
                )
            try:
                specs.append(FieldSpec(name=str(name), **body))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = "".join(f"{x}: " for x in first["loc"][:1])
                msg = first["msg"].removeprefix("Value error, ")
                raise ConfigError(
                    f"field {name!r}: {where}{msg} (got {first.get('input')!r})"
                ) from None
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"the schema declares {dupes} more than once")
    for s in specs:
        if not s.name.strip():
            raise ConfigError("a field name is empty")
        if s.currency is not None and not (len(s.currency) == 3 and s.currency.isupper()):
            raise ConfigError(
                f"field {s.name!r}: currency must be an ISO 4217 code like 'EUR'. "
                f"Got {s.currency!r} instead."
            )
    return specs


def gold_value(spec: FieldSpec, raw: str) -> str:
    """The normalised form of a true value, comparable with ``Candidate.value``."""
    if spec.type == "date":
        return parse_date(raw, order=spec.order).isoformat()
    if spec.type == "amount":
        return str(parse_amount(raw).amount)
    return normalize_text(raw)


def same_value(spec: FieldSpec, a: str, b: str) -> bool:
    """Whether two normalised values are equal (amounts compare as numbers)."""
    if spec.type == "amount":
        return Decimal(a) == Decimal(b)
    if spec.type == "text":
        return a.replace(" ", "") == b.replace(" ", "")
    return a == b


@dataclass(frozen=True)
class UnreadableValue:
    """A true value the field's normaliser cannot read, and where it is."""

    source: str  # the document's source (``file.jsonl:line``), or its position
    field: str
    value: str
    problem: str

    def __str__(self) -> str:
        return f"{self.source}: the true value of {self.field!r}, {self.value!r}: {self.problem}"


def unreadable_values(
    specs: Sequence[FieldSpec], examples: Sequence[FieldExample]
) -> list[UnreadableValue]:
    """Every true value in ``examples`` that its field's normaliser cannot read.

    A month-first ``12/28/2017`` under ``order: DMY``, an amount with no digits: values
    that cannot be compared with what the extractor finds.

    Example:
        >>> specs = parse_schema({"date": {"type": "date", "order": "DMY"}})
        >>> [str(u) for u in unreadable_values(specs, [
        ...     FieldExample("x", {"date": "28/12/2017"}, "a.jsonl:1"),
        ...     FieldExample("y", {"date": "12/28/2017"}, "a.jsonl:2")])]  # doctest: +ELLIPSIS
        ["a.jsonl:2: the true value of 'date', '12/28/2017': ..."]
    """
    return [u for i, ex in enumerate(examples) for u in _unreadable(specs, ex, i)]


def _unreadable(specs: Sequence[FieldSpec], ex: FieldExample, i: int) -> list[UnreadableValue]:
    out = []
    for spec in specs:
        raw = ex.values.get(spec.name)
        if raw is None or not str(raw).strip():
            continue
        try:
            gold_value(spec, str(raw))
        except DataError as exc:
            out.append(UnreadableValue(ex.source or f"document #{i + 1}", spec.name,
                                       str(raw), str(exc)))  # fmt: skip
    return out


def drop_unreadable(
    specs: Sequence[FieldSpec], examples: Sequence[FieldExample]
) -> tuple[list[FieldExample], list[UnreadableValue]]:
    """The documents whose true values can all be read, and what the others held.

    A document with one unreadable value is dropped whole (its other values stay true,
    but a document half-labelled would teach the extractor that the field is absent).
    """
    kept: list[FieldExample] = []
    bad: list[UnreadableValue] = []
    for i, ex in enumerate(examples):
        problems = _unreadable(specs, ex, i)
        bad += problems
        if not problems:
            kept.append(ex)
    return kept, bad
