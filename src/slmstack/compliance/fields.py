"""Field rules: exact checks on the record a :class:`~slmstack.FieldExtractor` read.

A record is ``{field: value}``, where a value is the extractor's ``{"value": ...}`` entry
or the bare value: ISO dates (``2024-03-01``) and amounts (``"118.00"``, or text read as
the extractor reads it: ``"1.234,56"``). ``sum_equals`` adds amounts of one currency
only (the extractor's ``currency``, or the one the text shows); mixed, it is ``violated``
with the currencies named, as no rate is given to convert them. A field that is absent
or empty (``None``, ``""``, a DataFrame's NaN or NaT) gives the flag ``missing``; a check
that fails, ``violated``.
These are exact tests, so their confidence is 1 and they are never ``needs_review``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from slmstack.compliance.rules import FieldRule, RulePack
from slmstack.data.normalizers import parse_amount
from slmstack.errors import DataError
from slmstack.types import Prediction


def _value(record: Mapping[str, Any], name: str) -> Any:
    raw = record.get(name)
    if isinstance(raw, Mapping):
        raw = raw.get("value")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    # NaN, NaT and NA are how a DataFrame's records say "empty cell": absent, not a value
    # shown. Each is unequal to itself (NA's comparison cannot even be asked).
    try:
        empty = bool(raw != raw)
    except TypeError:
        empty = True
    return None if empty else raw


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _amount(value: Any) -> Decimal | None:
    if isinstance(value, str):
        # As the extractor reads amounts: "1.234,56" and "1,234.56" are both 1234.56.
        try:
            return parse_amount(value).amount
        except DataError:
            return None  # "NaN", "Infinity", no digits: not an amount
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _currency(record: Mapping[str, Any], name: str) -> str | None:
    """The currency of an amount: the extractor's ``currency``, else the one its text shows."""
    raw = record.get(name)
    if isinstance(raw, Mapping):
        if raw.get("currency"):
            return str(raw["currency"]).upper()
        raw = raw.get("value")
    if isinstance(raw, str):
        try:
            return parse_amount(raw).currency
        except DataError:
            return None
    return None


def field_record(prediction: Prediction) -> dict[str, Any]:
    """A FieldExtractor prediction's record, each found field with its ``span``.

    The span (``start``, ``end``, ``text`` of the document) is the evidence a field rule
    shows, as the text rules show theirs.
    """
    record: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v
                              for k, v in prediction.data.get("fields", {}).items()}  # fmt: skip
    for span in prediction.spans:
        entry = record.get(span.label)
        if isinstance(entry, dict) and "span" not in entry:
            entry["span"] = {"start": span.start, "end": span.end, "text": span.text}
    return record


def _evidence(record: Mapping[str, Any], names: Sequence[str]) -> list[dict[str, Any]]:
    found = []
    for name in names:
        raw = record.get(name)
        span = raw.get("span") if isinstance(raw, Mapping) else None
        if isinstance(span, Mapping):
            found.append({"start": span["start"], "end": span["end"], "text": span["text"],
                          "field": name})  # fmt: skip
    return sorted(found, key=lambda e: e["start"])


def check_field_rule(rule: FieldRule, record: Mapping[str, Any]) -> dict[str, Any]:
    """The result of one field rule on one record (same keys as the NLI rules' results)."""
    names = [*rule.fields, *([rule.total] if rule.total else [])]
    values = {n: _value(record, n) for n in names}
    absent = [n for n, v in values.items() if v is None]
    flag, why = "ok", ""
    if absent:
        flag, why = "missing", f"no value for {', '.join(absent)}"
    elif rule.check == "due_within_days":
        issued, due = _date(values[rule.fields[0]]), _date(values[rule.fields[1]])
        if issued is None or due is None:
            bad = rule.fields[0] if issued is None else rule.fields[1]
            flag, why = "violated", f"{bad} {str(values[bad])!r} is not an ISO date (YYYY-MM-DD)"
        else:
            days = (due - issued).days
            ok = 0 <= days <= (rule.days or 0)
            flag = "ok" if ok else "violated"
            why = f"due {days} days after issue (at most {rule.days} allowed)"
    elif rule.check == "sum_equals":
        parts = [_amount(values[n]) for n in rule.fields]
        total = _amount(values[rule.total or ""])
        unread = [n for n in names if _amount(values[n]) is None]
        # An amount with no currency is taken to be in the others' currency; two currencies
        # cannot be added without a rate, and the rule has none.
        currencies = {n: c for n in names if (c := _currency(record, n)) is not None}
        if unread:
            flag, why = "violated", f"{unread[0]} {str(values[unread[0]])!r} is not an amount"
        elif len(set(currencies.values())) > 1:
            shown = ", ".join(f"{n} in {c}" for n, c in currencies.items())
            flag, why = "violated", (f"amounts in different currencies ({shown}) cannot be "
                                     "added; convert them to one currency first")  # fmt: skip
        elif total is not None:
            found = sum(p for p in parts if p is not None)
            ok = abs(found - total) <= Decimal(str(rule.tolerance))
            flag = "ok" if ok else "violated"
            why = f"{' + '.join(rule.fields)} = {found}, {rule.total} = {total}"
    else:  # present
        why = "shown"
    return {
        "id": rule.id, "title": rule.title, "severity": rule.severity, "source": rule.source,
        "check": rule.check,
        "fields": {k: (None if v is None else str(v)) for k, v in values.items()},
        "confidence": 1.0, "flag": flag, "why": why, "evidence": _evidence(record, names),
    }  # fmt: skip


def check_fields(pack: RulePack, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every field rule of ``pack`` on ``record``.

    Example:
        >>> from slmstack.compliance import load_pack
        >>> rec = {"date": "2024-03-01", "due_date": "2024-05-15", "subtotal": "100",
        ...        "tax": "20", "total": "120"}
        >>> [(r["id"], r["flag"]) for r in check_fields(load_pack("payment-terms"), rec)]
        [('due-within-30-days', 'violated'), ('vat-shown', 'ok'), ('totals-consistent', 'ok')]
    """
    return [check_field_rule(rule, record) for rule in pack.field_rules]


def combine(
    pack: RulePack, text_result: Prediction | None, field_results: Sequence[Mapping[str, Any]]
) -> Prediction:
    """One document's result over the whole pack: the checker's and the field rules'.

    ``label`` is the worst flag of all rules, ``confidence`` the least sure, ``spans``
    the text rules' evidence, ``text`` a one-line-per-rule summary of what is not ok
    (what a person reads in an escalation), and ``data["rules"]`` every rule's result.
    """
    base = text_result or Prediction(confidence=1.0)
    rules = [*base.data.get("rules", []), *field_results]
    flags = [str(r["flag"]) for r in rules]
    worst = next((f for f in ("violated", "missing", "needs_review", "ok") if f in flags), "ok")
    counts = dict.fromkeys(("ok", "missing", "violated", "needs_review"), 0)
    for f in flags:
        counts[f] += 1
    lines = []
    for r in rules:
        if r["flag"] == "ok":
            continue
        ev = "; ".join(
            f"[{e['start']}:{e['end']}] {e['text'][:160]}" for e in r.get("evidence", ())
        )
        why = r.get("verdict") or r.get("why", "")
        lines.append(f"{r['flag']}: {r['id']} {r.get('title', '')} ({r.get('severity')}, "
                     f"{r.get('source')}): {why}"
                     + (f"; evidence: {ev}" if ev else ""))  # fmt: skip
    return Prediction(
        label=worst,
        confidence=min((float(r["confidence"]) for r in rules), default=1.0),
        spans=base.spans,
        text="\n".join(lines) if lines else "every rule is ok",
        data={**base.data, "pack": pack.name, "rules": rules, "counts": counts, "not_checked": []},
        usage=base.usage,
        warnings=base.warnings,
    )


__all__ = ["check_field_rule", "check_fields", "combine"]
