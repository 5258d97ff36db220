"""Readers for document-level extraction data: field values and labelled clauses."""

from __future__ import annotations

from pathlib import Path

from slmstack.data.clauses import ClauseExample, label_clauses
from slmstack.data.fields import FieldExample
from slmstack.data.readers import check_key, read_records
from slmstack.errors import DataError


def read_field_examples(
    path: str | Path, *, text_key: str = "text", values_key: str = "values"
) -> list[FieldExample]:
    """Read JSONL lines ``{"text": "...", "values": {"total": "12.50", ...}}``."""
    p = Path(path)
    if p.suffix.lower() not in {".jsonl", ".ndjson"}:
        raise DataError(
            f"field examples must be JSONL (one document per line); got {p.suffix!r}", path=p
        )
    out = []
    for rec in read_records(p):
        text = rec.fields.get(text_key)
        check_key(rec.fields, values_key, p, rec.line, also=("fields", "labels"))
        values = rec.fields.get(values_key, {})
        if not isinstance(text, str):
            raise DataError(f"no string {text_key!r} key", path=p, row=rec.line)
        if not isinstance(values, dict) or not all(
            v is None or isinstance(v, str | int | float) for v in values.values()
        ):
            raise DataError(
                f"{values_key!r} must be an object of field name to string (or null)",
                path=p,
                row=rec.line,
            )
        clean = {str(k): None if v is None else str(v) for k, v in values.items()}
        out.append(FieldExample(text, clean, f"{p}:{rec.line}"))
    if not out:
        raise DataError("file has no rows", path=p)
    return out


def read_clause_examples(
    path: str | Path, *, min_chars: int = 40, max_chars: int = 1500
) -> list[ClauseExample]:
    """Read labelled clauses from JSONL, one of two line shapes (mixing is fine).

    * a clause: ``{"text": "...", "labels": ["Governing Law"]}`` (``[]`` for none), with
      ``"position": [index, count]`` when known (clause ``index``, from 0, of the ``count``
      clauses of its contract: the finder reads where a clause sits);
    * a whole contract, CUAD style: ``{"text": "...", "clauses": {"Governing Law":
      ["This Agreement shall be governed by ..."]}}``; it is split into clauses and each
      is labelled with the types whose snippets overlap it (split as
      :func:`~slmstack.data.clauses.split_clauses` with ``min_chars`` and ``max_chars``:
      pass the finder's own, which ``ClauseFinder.read_training_data`` does not know).
    """
    p = Path(path)
    out: list[ClauseExample] = []
    for rec in read_records(p):
        text = rec.fields.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError("no non-empty string 'text' key", path=p, row=rec.line)
        if "clauses" in rec.fields:
            ann = rec.fields["clauses"]
            if not isinstance(ann, dict) or not all(
                isinstance(v, list) and all(isinstance(s, str) for s in v) for v in ann.values()
            ):
                raise DataError(
                    "'clauses' must map each clause type to a list of text snippets",
                    path=p,
                    row=rec.line,
                )
            clauses, missing = label_clauses(
                text, ann, source=f"{p}:{rec.line}", min_chars=min_chars, max_chars=max_chars
            )
            if missing:
                raise DataError(
                    f"{missing} snippet(s) do not occur in the contract text; snippets must be "
                    "copied from the text (whitespace may differ)",
                    path=p,
                    row=rec.line,
                )
            out += clauses
            continue
        check_key(rec.fields, "labels", p, rec.line, also=("types", "categories"))
        labels = rec.fields.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise DataError("'labels' must be a list of strings", path=p, row=rec.line)
        position = rec.fields.get("position")
        if position is not None and not (
            isinstance(position, list)
            and len(position) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in position)
            and 0 <= position[0] < position[1]
        ):
            raise DataError(
                f"'position' must be [index, count] with 0 <= index < count (the clause's "
                f"number in its contract, from 0, and the contract's clause count); got "
                f"{position!r}. Leave it out when unknown",
                path=p,
                row=rec.line,
            )
        out.append(
            ClauseExample(
                text,
                tuple(sorted(set(labels))),
                f"{p}:{rec.line}",
                (position[0], position[1]) if position is not None else None,
            )
        )
    if not out:
        raise DataError("file has no rows", path=p)
    return out
