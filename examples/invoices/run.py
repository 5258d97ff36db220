"""Extract vendor, address, date and total from a folder of invoice texts into CSV.

    python examples/invoices/run.py             # writes out/invoices.csv
    python examples/invoices/run.py --check     # and compare with expected.csv

The extractor is trained from data/train.jsonl the first time and cached in
.slmstack-cache/. A row needs review when the workflow escalated it (the extractor was
not sure enough of some field) or when a required field is missing; the review inbox
holds a packet for each escalated document.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from slmstack.workflows import load_workflow

HERE = Path(__file__).resolve().parent
FIELDS = ("vendor", "address", "date", "total")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=HERE / "data" / "invoices")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "invoices.csv")
    parser.add_argument("--cache", type=Path, default=HERE / ".slmstack-cache")
    parser.add_argument("--check", action="store_true", help="compare with expected.csv")
    args = parser.parse_args(argv)

    workflow = load_workflow(
        HERE / "workflow.yaml",
        cache_dir=args.cache,
        inbox=f"sqlite:///{args.cache / 'review.db'}",
    )
    files = sorted(args.folder.glob("*.txt"))
    rows = []
    for path in files:
        result = workflow.run(path.read_text(encoding="utf-8"), key=f"invoice:{path.name}")
        # An empty file (a blank scan) escalates before the extractor runs: no record.
        fields = result.outputs.get("fields")
        record = fields.data["fields"] if fields is not None else {}
        missing = [name for name in FIELDS if record.get(name, {"missing": True}).get("missing")]
        reasons = []
        if result.escalation is not None:
            reasons.append(f"{result.escalation.reason} ({result.escalation.why})")
        if missing:
            reasons.append("missing " + ", ".join(missing))
        row = {"file": path.name}
        for name in FIELDS:
            value = record.get(name, {}).get("value")
            if name == "total" and value is not None:
                value = f"{value} {record[name].get('currency') or ''}".strip()
            row[name] = value or ""
        row["confidence"] = f"{fields.confidence:.2f}" if fields is not None else ""
        row["needs_review"] = "yes" if reasons else "no"
        row["review_reason"] = "; ".join(reasons)
        rows.append(row)
        flag = "REVIEW" if reasons else "ok"
        print(f"{flag:6} {path.name:28} " + "  ".join(f"{k}={row[k]!r}" for k in FIELDS))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["file"])
        writer.writeheader()
        writer.writerows(rows)
    flagged = sum(r["needs_review"] == "yes" for r in rows)
    print(f"{len(rows)} invoices → {args.out} ({flagged} need review)")
    if not args.check:
        return 0
    with (HERE / "expected.csv").open(newline="", encoding="utf-8") as f:
        expected = {r["file"]: r for r in csv.DictReader(f)}
    problems = []
    for row in rows:
        want = expected[row["file"]]
        if not any(want[k] for k in FIELDS):  # an unreadable document must be flagged
            if row["needs_review"] != "yes":
                problems.append(f"{row['file']}: unreadable but not flagged for review")
            continue
        if row["needs_review"] == "yes":
            continue  # a flagged row is checked by a person, not here
        problems += [
            f"{row['file']}: {k} is {row[k]!r}, expected {want[k]!r}"
            for k in FIELDS
            if row[k] != want[k]
        ]
    readable = [r for r in rows if any(expected[r["file"]][k] for k in FIELDS)]
    clean = [r for r in readable if r["needs_review"] == "no"]
    if len(clean) < len(readable) - 1:
        problems.append(f"only {len(clean)} of {len(readable)} readable invoices needed no review")
    if problems:
        print("check failed:", *problems, sep="\n  ")
        return 1
    print(f"check passed: {len(rows)} invoices; every unflagged row matches expected.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
