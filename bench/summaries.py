"""DialogSum ROUGE of ``Summarizer`` with the two local generators, in one run.

Data: ``../shared/datasets/dialogsum/dialogsum.dev.jsonl`` (500 dialogues, one reference
each; CC BY-NC-SA 4.0, evaluation only). To keep the CPU time near 20 minutes on 2 cores,
the first ``--limit`` dialogues (default 100) are used, the same ones for every model.

Each model runs in its own subprocess (so peak memory is per model) with the llama.cpp
runtime, greedy decoding, ``max_sentences=2`` and one instruction that names the
speakers the way DialogSum references do (``#Person1#``). No training, no few-shot.
Reported: ROUGE-1/2/L F1 (rouge-score, stemmed), output tokens per second, seconds per
dialogue, and peak RSS. Published reference: BART-large 45.95 / 21.36 / 38.72.

Run (heavy: wrap it in the shared CPU lock)::

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/summaries.py > /tmp/bench_summ.log 2>&1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "dialogsum" / "dialogsum.dev.jsonl"
INSTRUCTIONS = (
    "The text is a dialogue; refer to the speakers as #Person1# and #Person2#, as the "
    "dialogue does, and say what happens, in the third person."
)


def worker(model: str, data: Path, limit: int, max_sentences: int) -> dict:
    from slmstack import Summarizer
    from slmstack.evaluation.speed import peak_rss_mb
    from slmstack.evaluation.summaries import rouge_scores

    rows = [json.loads(line) for line in data.read_text().splitlines()[:limit]]
    start = time.perf_counter()
    skill = Summarizer(model=model, max_sentences=max_sentences, instructions=INSTRUCTIONS)
    skill.fit([])
    load_s = time.perf_counter() - start
    preds = []
    start = time.perf_counter()
    for i, row in enumerate(rows):
        preds.append(skill.predict([row["dialogue"]])[0])
        if i % 10 == 9:  # running scores, so a run cut short still says something
            so_far = rouge_scores(
                [p.text or "" for p in preds], [r["summary"] for r in rows][: i + 1]
            )
            print(
                f"{model} after {i + 1}: {so_far} last={preds[-1].text!r}",
                file=sys.stderr,
                flush=True,
            )
    seconds = time.perf_counter() - start
    outputs = [p.text or "" for p in preds]
    scores = rouge_scores(outputs, [r["summary"] for r in rows])
    out_tokens = sum(p.usage.output_tokens for p in preds)
    return {
        "model": model,
        "n": len(rows),
        **scores,
        "load_s": load_s,
        "tokens_per_s": out_tokens / seconds,
        "s_per_dialogue": seconds / len(rows),
        "peak_rss_mb": peak_rss_mb(),
        "cut": sum(1 for p in preds if p.warnings),
        "abstained": sum(1 for p in preds if p.abstained),
        "example": outputs[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2", "qwen2.5-0.5b"])
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--max-sentences", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(
            f"missing {args.data}: this benchmark needs the DialogSum dev file from "
            "../shared/datasets/dialogsum (cylnlp/dialogsum @848cc8c); pass --data PATH."
        )
    if args.worker:
        result = worker(args.worker, args.data, args.limit, args.max_sentences)
        print("RESULT " + json.dumps(result), flush=True)
        return
    results = []
    for model in args.models:
        cmd = [sys.executable, __file__, "--worker", model, "--limit", str(args.limit)]
        cmd += ["--max-sentences", str(args.max_sentences), "--data", str(args.data)]
        # stderr passes through, so progress reaches the log while the worker runs
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            sys.exit(f"worker for {model} failed with exit code {proc.returncode}")
        results.append(json.loads(line[-1][len("RESULT ") :]))
    print(
        f"DialogSum dev, first {args.limit} dialogues, llama.cpp, greedy, "
        f"max_sentences={args.max_sentences}.\n"
    )
    print("| model | ROUGE-1 | ROUGE-2 | ROUGE-L | tokens/s | s/dialogue | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['model']} | {r['rouge1']:.2f} | {r['rouge2']:.2f} | {r['rougeL']:.2f} | "
            f"{r['tokens_per_s']:.1f} | {r['s_per_dialogue']:.2f} | {r['peak_rss_mb']:.0f} |"
        )
    print("| BART-large (published, full dev/test, fine-tuned) | 45.95 | 21.36 | 38.72 | | | |")
    for r in results:
        print(f"\n{r['model']} on dev_0: {r['example']!r} (cut to bound: {r['cut']})")


if __name__ == "__main__":
    main()
