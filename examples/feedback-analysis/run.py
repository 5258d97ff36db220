"""Analyse data/reviews.csv: per-review JSONL plus an aggregate report.

    python examples/feedback-analysis/run.py            # writes out/results.jsonl, out/report.md
    python examples/feedback-analysis/run.py --check    # also compare with expected.json

Each review goes through the workflow (sentiment and entities in parallel, then a
summary that uses both). The batch is resumable: interrupt it and run again, and it
continues after the last review written. The report gives the sentiment share, the
most mentioned products and aspects, and a summary of the negative reviews.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from slmstack.data.readers import read_records
from slmstack.workflows import SkillLike, load_workflow, run_batch

HERE = Path(__file__).resolve().parent


def aggregate(rows: list[dict], summarizer) -> dict:
    """Sentiment share, top entities, and one summary of all negative reviews."""
    sentiments = Counter(r["output"]["data"]["sentiment"] for r in rows)
    entities = Counter(
        (e["label"], e["text"].lower()) for r in rows for e in r["output"]["data"]["entities"]
    )
    negatives = [r["input"] for r in rows if r["output"]["data"]["sentiment"] == "negative"]
    negative_summary = None
    if negatives:
        joined = "Negative customer reviews:\n" + "\n".join(f"- {t}" for t in negatives)
        negative_summary = summarizer.predict([joined])[0].text
    return {
        "reviews": len(rows),
        "sentiment_share": {k: round(v / len(rows), 3) for k, v in sorted(sentiments.items())},
        "top_entities": [
            {"label": label, "text": text, "count": n}
            for (label, text), n in entities.most_common(8)
        ],
        "negatives": len(negatives),
        "negative_summary": negative_summary,
    }


def report_markdown(report: dict) -> str:
    lines = ["# Feedback report", "", f"{report['reviews']} reviews.", "", "## Sentiment", ""]
    lines += [f"- {k}: {v:.0%}" for k, v in report["sentiment_share"].items()]
    lines += ["", "## Most mentioned", ""]
    lines += [f"- {e['text']} ({e['label']}): {e['count']}" for e in report["top_entities"]]
    lines += ["", f"## The {report['negatives']} negative reviews in brief", ""]
    lines += [report["negative_summary"] or "(none)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None, *, skills: Mapping[str, SkillLike] | None = None) -> int:
    """Run the batch and the report; ``skills`` is for tests (used instead of trained ones)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reviews", type=Path, default=HERE / "data" / "reviews.csv")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--cache", type=Path, default=HERE / ".slmstack-cache")
    parser.add_argument("--restart", action="store_true", help="redo every review")
    parser.add_argument("--check", action="store_true", help="compare with expected.json")
    args = parser.parse_args(argv)

    workflow = load_workflow(HERE / "workflow.yaml", cache_dir=args.cache, skills=skills)
    results = args.out / "results.jsonl"
    summary = run_batch(workflow, args.reviews, results, restart=args.restart)
    print(f"{summary.processed} reviews analysed, {summary.already_done} already done")
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    report = aggregate(rows, workflow.skills["summarizer"])
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(report_markdown(report))
    print(report_markdown(report))
    for r in rows:
        data = r["output"]["data"]
        mentioned = ", ".join(e["text"] for e in data["entities"]) or "-"
        print(f"{data['sentiment']:>8}  {r['input'][:60]:60}  [{mentioned}]  {data['summary']}")
    if not args.check:
        return 0
    expected = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))
    ids = [str(r.fields["id"]) for r in read_records(args.reviews)]
    got_sentiment = {i: r["output"]["data"]["sentiment"] for i, r in zip(ids, rows, strict=True)}
    problems = [
        f"{i}: sentiment {got_sentiment.get(i)!r}, expected {label!r}"
        for i, label in expected["sentiment"].items()
        if got_sentiment.get(i) != label
    ]
    found = {(e["label"], e["text"]) for e in report["top_entities"]}
    problems += [
        f"entity {e['text']!r} ({e['label']}) not among the most mentioned"
        for e in expected["top_entities_include"]
        if (e["label"], e["text"]) not in found
    ]
    if problems:
        print("check failed:", *problems, sep="\n  ")
        return 1
    print(f"check passed: {len(expected['sentiment'])} sentiments and top entities as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
