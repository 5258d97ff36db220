"""The simulated app of ``bench/migration.py``: its traffic, its prompts, and the scoring.

The app sends an LLM two kinds of call, each with ONE fixed prompt, as a real app would:

- BANKING77 queries (the test split), classified into the 77 intents: a system prompt and
  a user message that lists the labels and ends with the query;
- SROIE receipts (OCR lines, read as ``bench/sroie.py`` reads them), with an extraction
  prompt asking for a JSON object ``{company, date, address, total}`` (``response_format``
  ``json_object``, which OpenAI's API and llama.cpp both accept).

The two are interleaved in a seeded "time order". Gold labels and gold fields stay in the
:class:`Request` objects, never in the prompts: they are read only when scoring.

Scoring: banking answers by label equality (:func:`slmstack.proxy.answers.label_of`
forms); receipts by field-level precision/recall/F1 as ``bench/sroie.py`` computes it (ISO
dates, amounts as numbers, text case-folded with spaces ignored), after normalising each
predicted value with the same normalisers as the gold (a value they cannot read counts
as a wrong value).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmstack.data.fields import FieldExample, gold_value, parse_schema, same_value
from slmstack.errors import DataError
from slmstack.proxy.answers import json_object, label_of

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
BANKING = SHARED / "banking77"
SROIE = SHARED / "sroie" / "train" / "data"
MODEL = "gpt-4"  # what the app believes it calls; the shim maps it to the local Qwen
FIELDS = ("company", "date", "address", "total")
SCHEMA = {
    "company": "text",
    "address": "text",
    "date": {"type": "date", "order": "DMY"},
    "total": {"type": "amount", "currency": "MYR"},
}
SPECS = {s.name: s for s in parse_schema(SCHEMA)}

BANK_SYSTEM = (
    "You are the intent classifier of a bank's customer-support app. "
    "Answer with exactly one intent label from the list, and nothing else."
)
BANK_USER = (
    "Classify this banking query into one of these intents: {labels}.\n\nQuery: {text}\nIntent:"
)
RECEIPT_SYSTEM = "You read scanned receipts for an expense app and answer with a JSON object only."
RECEIPT_USER = (
    "Extract these fields from the receipt below and answer with a JSON object with the keys "
    '"company" (the shop\'s name), "date" (as printed), "address" (the shop\'s address, one '
    'line) and "total" (the amount paid, digits only); use null when a field is absent.\n\n'
    "Receipt:\n{text}\n\nJSON:"
)


@dataclass(frozen=True)
class Request:
    """One call of the app: its kind, its variable text, and the gold answer (kept aside)."""

    i: int
    kind: str  # "banking" | "receipt"
    text: str
    gold: Any  # the intent label, or {field: raw gold value}
    body: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)


def labels() -> list[str]:
    """The 77 intents, in the dataset's order."""
    return list(json.loads((BANKING / "categories.json").read_text()))


def banking_body(text: str, names: Sequence[str]) -> dict[str, Any]:
    user = BANK_USER.format(labels=", ".join(names), text=text)
    return {"model": MODEL, "temperature": 0, "max_tokens": 16,
            "messages": [{"role": "system", "content": BANK_SYSTEM},
                         {"role": "user", "content": user}]}  # fmt: skip


def receipt_body(text: str) -> dict[str, Any]:
    return {"model": MODEL, "temperature": 0, "max_tokens": 160,
            "response_format": {"type": "json_object"},
            "messages": [{"role": "system", "content": RECEIPT_SYSTEM},
                         {"role": "user", "content": RECEIPT_USER.format(text=text)}]}  # fmt: skip


def read_banking() -> list[tuple[str, str]]:
    with (BANKING / "test.csv").open(encoding="utf-8") as fh:
        return [(r["text"], r["category"]) for r in csv.DictReader(fh)]


def read_receipts() -> list[FieldExample]:
    """The SROIE receipts as ``bench/sroie.py`` reads them (OCR lines in file order)."""
    out = []
    for key in sorted((SROIE / "key").glob("*.json")):
        lines = []
        for raw in (SROIE / "box" / f"{key.stem}.csv").read_text(encoding="utf-8").splitlines():
            parts = raw.split(",", 8)
            if len(parts) == 9 and parts[8].strip():
                lines.append(parts[8].strip())
        values = json.loads(key.read_text(encoding="utf-8"))
        out.append(FieldExample("\n".join(lines), {k: values.get(k) or None for k in SCHEMA},
                                key.stem))  # fmt: skip
    return out


def traffic(n_banking: int, n_receipts: int, seed: int = 18) -> list[Request]:
    """The app's calls in a seeded time order: ``n_banking`` queries and ``n_receipts`` receipts.

    Receipts are spread evenly through the order (each at a random slot of its stretch),
    so every phase of the replay sees both tasks in proportion.
    """
    if not (BANKING / "test.csv").exists() or not (SROIE / "key").is_dir():
        raise SystemExit(f"missing data: expected {BANKING}/test.csv and {SROIE}/key")
    rng = random.Random(seed)
    names = labels()
    bank = rng.sample(read_banking(), n_banking)
    receipts = rng.sample(read_receipts(), n_receipts)
    kinds = ["banking"] * n_banking
    stretch = (n_banking + n_receipts) / max(1, n_receipts)
    for j in range(n_receipts):
        kinds.insert(min(len(kinds), int(j * stretch + rng.random() * stretch)), "receipt")
    out, b, r = [], iter(bank), iter(receipts)
    for i, kind in enumerate(kinds):
        if kind == "banking":
            text, gold = next(b)
            out.append(Request(i, kind, text, gold, banking_body(text, names)))
        else:
            ex = next(r)
            out.append(Request(i, kind, ex.text, dict(ex.values), receipt_body(ex.text)))
    return out


# ----------------------------------------------------------------------------- scoring
def answer_label(content: str) -> str:
    """A banking answer as a label (quotes, case and end punctuation aside)."""
    return label_of(content)


def answer_fields(content: str) -> dict[str, Any]:
    """A receipt answer's fields: a flat JSON object, or a FieldExtractor's ``fields`` form."""
    obj = json_object(content) or {}
    if isinstance(obj.get("fields"), dict):  # {"fields": {name: {"value": ...}}, ...}
        obj = {k: (v.get("value") if isinstance(v, dict) else v)
               for k, v in obj["fields"].items()}  # fmt: skip
    return {k: obj.get(k) for k in FIELDS}


def _norm(name: str, value: Any) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        return gold_value(SPECS[name], str(value))
    except (DataError, ValueError, ArithmeticError):
        return "\x00unreadable"


def field_scores(pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """Micro and per-field P/R/F1 of ``(predicted fields, gold fields)`` pairs."""
    per: dict[str, dict[str, float]] = {}
    total = [0, 0, 0]
    for name in FIELDS:
        tp = fp = fn = 0
        for got_raw, gold_raw in pairs:
            got, gold = _norm(name, got_raw.get(name)), _norm(name, gold_raw.get(name))
            if gold == "\x00unreadable":
                gold, fn = None, fn + 1
            readable = got is not None and gold is not None and got != "\x00unreadable"
            if readable and same_value(SPECS[name], str(got).casefold(), str(gold)):
                tp += 1
                continue
            fp += got is not None
            fn += gold is not None
        per[name] = _prf(tp, fp, fn)
        total = [total[0] + tp, total[1] + fp, total[2] + fn]
    return {"micro": _prf(*total), "per_field": per, "n": len(pairs)}


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4),
            "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0}  # fmt: skip


def fields_agree(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Share of the fields on which two answers give the same normalised value."""
    return sum(_norm(k, a.get(k)) == _norm(k, b.get(k)) for k in FIELDS) / len(FIELDS)
