# ruff: noqa: E501  (the RESULTS.md paragraphs are written as single lines)
"""Feedback-analysis review summaries: the example's LoRA-tuned SmolLM2 against prompted SmolLM2.

Data, written for this project (no dataset text): ``examples/feedback-analysis/data/
review-summaries.jsonl`` (110 rows: 100 reviews in the workflow's summarizer input form,
``Review: … / Sentiment: … / Mentioned: …``, with the ``Mentioned`` line the example's own
entity tagger produces, and 10 digests of several negative reviews) trains the adapter;
``review-summaries-val.jsonl`` (30 more written the same way: 27 reviews, 3 digests) is
held out: each system is scored on it once, and it makes no choice. The LoRA run makes
its one choice, the epoch, on a seeded 10% of the training rows; its other settings are
the example's ``workflow.yaml``, fixed before this run.

Systems, on the same 30 inputs:

* lead: the review's first sentence (a digest's first review);
* SmolLM2-135M prompted on llama.cpp, with the example's settings before the adapter
  (one sentence, its old instruction) and with the adapter's settings (two sentences,
  the new instruction);
* LoRA: the example's own summarizer spec (``tune: lora`` on transformers), trained and
  saved as the workflow loader does; a full run copies it into the example's cache.

Measures as ``bench/complaint_summary.py`` (ROUGE-1/2/L, copies at the skill's 0.8 limit,
abstentions, seconds per summary, training seconds), and how many summaries say
nothing but the sentiment (``The review is negative.``: under 6 words).

Run (it takes the CPU lock itself)::

    nice -n 5 .venv/bin/python bench/review_summary.py --write-results > /tmp/bench_review.log 2>&1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_lock, machine
from complaint_summary import KIND, log, run_lora, run_prompted, score

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "feedback-analysis"
VAL = EXAMPLE / "data" / "review-summaries-val.jsonl"
JSON_OUT = REPO / "bench" / "results" / "review_summary.json"
OLD = {"max_sentences": 1, "instructions": "Say what the reviewer thinks of which product, in the third person."}


def lead(text: str) -> str:
    from slmstack.skills.summary_text import split_sentences

    first = text.split("\n")[1][2:] if text.startswith("Negative customer reviews:") else text.split("\n")[0][len("Review: "):]
    return split_sentences(first)[0]


def extra(system: dict[str, Any]) -> dict[str, Any]:
    outs = system["outputs"]
    return {**system, "contentless": sum(0 < len(o.split()) < 6 for o in outs),
            "the_reviewer": sum(o.startswith(("The reviewer", "Reviewers")) for o in outs)}  # fmt: skip


def main() -> None:
    import yaml

    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[1])
    p.add_argument("--write-results", action="store_true", help=f"write {JSON_OUT.relative_to(REPO)}")
    args = p.parse_args()
    spec = yaml.safe_load((EXAMPLE / "workflow.yaml").read_text())["skills"]["summarizer"]
    assert spec["kind"] == KIND, spec
    params, train = dict(spec["params"]), EXAMPLE / spec["train"]
    rows = [json.loads(x) for x in VAL.read_text().splitlines() if x.strip()]
    report: dict[str, Any] = {
        "benchmark": "bench/review_summary.py", "command": " ".join(["bench/review_summary.py", *sys.argv[1:]]),
        "machine": machine(), "data": {"train": str(train.relative_to(REPO)), "held_out": str(VAL.relative_to(REPO)), "rows": len(rows)},
        "references": [r["summary"] for r in rows], "systems": {},
    }  # fmt: skip
    with cpu_lock() as waited:
        log(f"lock after {waited:.0f} s")
        report["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        start = time.perf_counter()
        leads = [lead(r["text"]) for r in rows]
        report["systems"]["lead"] = extra(score("lead: first sentence", leads, None, rows, time.perf_counter() - start))
        report["systems"]["prompted_old"] = extra(run_prompted("smollm2", {**params, **OLD}, rows))
        report["systems"]["prompted_new"] = extra(run_prompted("smollm2", params, rows))
        report["systems"]["lora"] = extra(run_lora(params, train, rows, None, desk=EXAMPLE, label="feedback example"))
    report["systems"]["prompted_old"]["system"] = "smollm2 prompted, the example's settings before (1 sentence)"
    report["systems"]["prompted_new"]["system"] = "smollm2 prompted, the adapter's settings (2 sentences)"
    print("| system | ROUGE-1 | ROUGE-2 | ROUGE-L | copied | abstained | under 6 words | s/summary |")
    print("|---|---|---|---|---|---|---|---|")
    for s in report["systems"].values():
        print(f"| {s['system']} | {s['rouge1']:.2f} | {s['rouge2']:.2f} | {s['rougeL']:.2f} | {s['copied']}/{len(rows)} | "
              f"{s['abstained']}/{len(rows)} | {s['contentless']}/{len(rows)} | {s['s_per_summary']:.2f} |")  # fmt: skip
    for name, s in report["systems"].items():
        print(f"{name}: {s['outputs'][0]!r} / {s['outputs'][-1]!r}")
    if args.write_results:
        JSON_OUT.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        log(f"wrote {JSON_OUT}")


if __name__ == "__main__":
    main()
