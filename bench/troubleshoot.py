"""Troubleshooter on a judged set: step support and step recall for each generator.

Data: ``examples/support-desk/data/troubleshoot-judged.jsonl``, 30 customer questions
over the support-desk manuals (``examples/support-desk/data/support-docs``), written for
the project by reading those manuals. Each question names the manual section that answers
it and the steps a good answer contains; each judged step has *keys*, the words that
identify it ("unplug" and "30 seconds"). An output step recalls a judged step when it
contains every key (lower-cased, lightly stemmed), so a paraphrase counts and a step that
only shares common words does not.

Generators, each with the same retriever (MiniLM, top 3 passages) and the skill's
defaults (``min_support=0.5``, ``fallback="quote"``), none tuned on this set:

* ``extractive``: no generator at all (``Troubleshooter(generator=None)``): every answer
  is the sentences of the best-matching manual passage, quoted with their citation (the
  same passage the generators' fallback quotes). This is the trivial baseline.
* ``smollm2``: SmolLM2-135M-Instruct (GGUF, llama.cpp, greedy).
* ``qwen2.5-0.5b``: Qwen2.5-Coder-0.5B-Instruct (GGUF, llama.cpp), only when its
  packages are installed; otherwise reported as skipped. Any other generator alias can be
  named with ``--generators``.

Reported per generator:

* ``raw_support``: share of the generator's own steps that the skill's measure finds
  supported by the passage they cite (phrase support, see
  ``slmstack/skills/_support.py``), before unsupported steps are dropped;
  ``raw_support_bag_of_words``: the same steps under the older measure (share of content
  words that occur anywhere in the cited passage), to show what it let through;
* ``output_support``: share of the steps users see (after dropping and quoting) that are
  supported by their cited passage, recomputed here from the cited chunks' text;
* ``step_recall``: judged steps recalled, averaged over questions (an abstention
  recalls nothing); ``step_precision``: output steps that recall some judged step;
* ``quoted``: answers that fell back to quoting the manual; ``abstained``; ``top1_hit``:
  questions whose best passage is the judged section; seconds per question.

Run (heavy: wrap it in the shared CPU lock)::

    flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python bench/troubleshoot.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")

from slmstack import Troubleshooter, read_documents
from slmstack.models.catalog import known_models
from slmstack.skills._support import content_words, stem, support
from slmstack.types import Prediction

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "support-desk" / "data"
_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> set[str]:
    """Every word (digits too), lower-cased and stemmed: what keys are matched against."""
    return {stem(w) for w in _TOKEN.findall(text.lower())}


def recalls(step: str, judged: dict[str, Any]) -> bool:
    """Whether ``step`` contains every key of the judged step."""
    have = tokens(step)
    return all(tokens(key) <= have for key in judged["keys"])


def bag_of_words(step: str, passage: str) -> float:
    """The older support measure: share of content words found anywhere in the passage."""
    words = content_words(step)
    return len(words & content_words(passage)) / len(words) if words else 0.0


def score(pred: Prediction, row: dict[str, Any], chunks: dict[str, str], min_support: float):
    """Per-question measures of one answer."""
    data = pred.data
    steps = list(data.get("steps", ()))
    generated = [s for s in steps if not data.get("quoted")] + list(data.get("dropped_steps", ()))

    def passage(step: dict[str, Any]) -> str:
        return "\n".join(chunks[i] for i in step["sources"])

    out_support = [support(s["text"], [passage(s)]) >= min_support for s in steps]
    hits = [any(recalls(s["text"], j) for s in steps) for j in row["steps"]]
    useful = [any(recalls(s["text"], j) for j in row["steps"]) for s in steps]
    retrieved = data.get("retrieved", [])
    return {
        "id": row["id"],
        "question": row["question"],
        "abstained": pred.abstained,
        "quoted": bool(data.get("quoted")),
        "top1_hit": bool(retrieved) and retrieved[0]["title"] == row["section"],
        "generated_steps": len(generated),
        "generated_supported": sum(s["support"] >= min_support for s in generated),
        "generated_supported_bow": sum(
            bag_of_words(s["text"], passage(s)) >= min_support for s in generated
        ),
        "output_steps": len(steps),
        "output_supported": sum(out_support),
        "recall": sum(hits) / len(hits),
        "useful_steps": sum(useful),
        "answer": pred.text,
        "raw_output": data.get("raw_output"),
        "dropped": [(s["text"], s["support"]) for s in data.get("dropped_steps", ())],
        "seconds": pred.usage.latency_ms / 1000,
    }


def ratio(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def run_generator(name: str, rows: list[dict[str, Any]], docs: list, max_tokens: int) -> dict:
    """Fit a troubleshooter for one generator, answer every question, aggregate."""
    if name != "extractive":
        known = known_models().get(name)
        if known is not None and known.locate() is None:
            return {"generator": name, "skipped": f"not installed ({known.install_command})"}
    generator = None if name == "extractive" else name  # None: the skill's extractive mode
    ts = Troubleshooter(generator=generator, max_tokens=max_tokens).fit(docs)
    chunks = {c.id: c.text for c in ts.chunks_.values()}
    start = time.perf_counter()
    per = []
    for row in rows:
        pred = ts.predict([row["question"]])[0]
        per.append(score(pred, row, chunks, ts.min_support))
        print(
            f"{name} {row['id']}: recall={per[-1]['recall']:.2f} quoted={per[-1]['quoted']} "
            f"{(pred.text or pred.abstained or '')[:90]!r}",
            file=sys.stderr,
            flush=True,
        )
    seconds = time.perf_counter() - start
    total = {
        k: sum(p[k] for p in per)
        for k in (
            "generated_steps",
            "generated_supported",
            "generated_supported_bow",
            "output_steps",
            "output_supported",
            "useful_steps",
        )
    }
    return {
        "generator": name,
        "questions": len(per),
        "abstained": sum(p["abstained"] is not None for p in per),
        "quoted": sum(p["quoted"] for p in per),
        "top1_hit": ratio(sum(p["top1_hit"] for p in per), len(per)),
        "raw_support": ratio(total["generated_supported"], total["generated_steps"]),
        "raw_support_bag_of_words": ratio(
            total["generated_supported_bow"], total["generated_steps"]
        ),
        "output_support": ratio(total["output_supported"], total["output_steps"]),
        "step_recall": ratio(sum(p["recall"] for p in per), len(per)),
        "step_precision": ratio(total["useful_steps"], total["output_steps"]),
        "steps_per_answer": ratio(total["output_steps"], len(per)),
        **total,
        "s_per_question": round(seconds / len(per), 3),
        "per_question": per,
    }


def table(results: list[dict]) -> str:
    """The summary as a markdown table."""
    head = (
        "| generator | support of generated steps (phrase / bag of words) | support of "
        "output steps | quoted | abstained | step recall | step precision | "
        "steps/answer | s/question |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['generator']} | skipped: {r['skipped']} |||||||| ")
            continue

        def pct(v: float | None) -> str:
            return "–" if v is None else f"{100 * v:.1f}%"

        lines.append(
            f"| {r['generator']} | {pct(r['raw_support'])} / {pct(r['raw_support_bag_of_words'])}"
            f" ({r['generated_steps']} steps) | {pct(r['output_support'])} "
            f"({r['output_steps']} steps) | {r['quoted']}/{r['questions']} | "
            f"{r['abstained']}/{r['questions']} | {pct(r['step_recall'])} | "
            f"{pct(r['step_precision'])} | {r['steps_per_answer']} | {r['s_per_question']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "troubleshoot-judged.jsonl")
    parser.add_argument("--docs", type=Path, default=DATA / "support-docs")
    parser.add_argument("--generators", default="extractive,smollm2,qwen2.5-0.5b")
    parser.add_argument("--limit", type=int, default=None, help="first N questions only")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/troubleshoot.json")
    args = parser.parse_args(argv)
    rows = [json.loads(x) for x in args.data.read_text().splitlines() if x.strip()]
    rows = rows[: args.limit] if args.limit else rows
    docs = read_documents(args.docs)
    results = []
    for name in args.generators.split(","):
        results.append(run_generator(name.strip(), rows, docs, args.max_tokens))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "data": str(args.data.relative_to(REPO)),
                    "questions": len(rows),
                    "judged_steps": sum(len(r["steps"]) for r in rows),
                    "settings": {
                        "top_k": 3,
                        "min_support": 0.5,
                        "fallback": "quote",
                        "max_tokens": args.max_tokens,
                        "decoding": "greedy",
                    },
                    "results": results,
                },
                indent=1,
            )
            + "\n"
        )
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
