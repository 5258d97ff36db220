"""Few-shot BANKING77 with paraphrase augmentation: does a local generator's rewrites of
the few examples help the classifier? Validation only (the test split is not read).

For each draw of ``--shots`` examples per intent (the draws and validation samples of
``bench/fewshot.py``), a local generator (``--model``, default Qwen2.5-0.5B through
llama.cpp) rewrites every example ``--per-example`` ways (``slmstack.distill.augment``:
copies, empty and run-away rewrites dropped); then two systems are trained on the
originals alone and on originals plus rewrites, and scored on the draw's validation
sample: the frozen MiniLM + logistic regression baseline, and ``TextClassifier(strategy=
"head", base="mpnet")`` (the few-shot configuration chosen on validation in
``bench/fewshot.py``). The rewrites are cached under ``bench/out/fewshot_augment/`` (an
interrupted run goes on).

    flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python bench/fewshot_augment.py

Writes ``bench/results/fewshot_augment.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine
from fewshot import Frozen, baseline, draw, fewshot, read

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / "out" / "fewshot_augment"
OUT = REPO / "bench" / "results" / "fewshot_augment.json"


def rewrites(xs: list[str], ys: list[str], args: argparse.Namespace, seed: int) -> list[Any]:
    """The kept rewrites of each example (cached as JSONL, one line per example)."""
    from slmstack.backends import load_backend
    from slmstack.distill.augment import augment
    from slmstack.types import Example

    path = CACHE / f"{args.model}-{args.shots}shot-draw{seed}-x{args.per_example}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    examples = [Example(x, y, f"#{i}") for i, (x, y) in enumerate(zip(xs, ys, strict=True))]
    if len(done) < len(examples):
        backend = load_backend(args.model, n_threads=2)
        start = time.perf_counter()
        with path.open("a", encoding="utf-8") as f:
            for ex, kept, dropped in augment(examples[len(done):], backend, args.per_example,
                                             seed=seed * 100_000 + len(done)):  # fmt: skip
                row = {"source": ex.source, "kept": [k.text for k in kept], "dropped": dropped}
                f.write(json.dumps(row) + "\n")
                f.flush()
                done.append(row)
        print(f"rewrote {len(examples)} examples in {time.perf_counter() - start:.0f} s")
    return done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--draws", type=int, default=1)
    ap.add_argument("--per-example", type=int, default=2)
    ap.add_argument("--model", default="qwen2.5-0.5b")
    ap.add_argument("--val-per-label", type=int, default=5)
    args = ap.parse_args()
    tr_x, tr_y = read("train")
    frozen = Frozen()
    runs = []
    for seed in range(args.draws):
        train, val = draw(tr_x, tr_y, args.shots, seed, args.val_per_label)
        xs, ys = [tr_x[i] for i in train], [tr_y[i] for i in train]
        evals, gold = {"val": [tr_x[i] for i in val]}, {"val": [tr_y[i] for i in val]}
        rows = rewrites(xs, ys, args, seed)
        ax = xs + [t for r in rows for t in r["kept"]]
        ay = ys + [y for r, y in zip(rows, ys, strict=True) for _ in r["kept"]]
        dropped: dict[str, int] = {}
        for r in rows:
            for k, v in r["dropped"].items():
                dropped[k] = dropped.get(k, 0) + v
        head = {"strategy": "head", "base": "mpnet", "precision": "fp32"}
        for name, (tx, ty) in {"originals": (xs, ys), "with rewrites": (ax, ay)}.items():
            b = baseline(frozen, tx, ty, evals, gold)
            h = fewshot(tx, ty, evals, gold, head, seed)
            run = {"draw": seed, "data": name, "examples": len(tx),
                   "baseline_minilm_lr_val": round(b["val_accuracy"], 2),
                   "head_mpnet_val": round(h["val_accuracy"], 2),
                   "rewrites_kept": len(ax) - len(xs), "dropped": dropped}  # fmt: skip
            print(json.dumps(run), flush=True)
            runs.append(run)
    result = {"split": "validation samples of bench/fewshot.py's draws (test not read)",
              "shots": args.shots, "per_example": args.per_example, "model": args.model,
              "runs": runs, "machine": machine(),
              "command": "flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python "
                         "bench/fewshot_augment.py " + " ".join(sys.argv[1:])}  # fmt: skip
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
