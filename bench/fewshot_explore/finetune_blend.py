"""Few-shot BANKING77, validation only: the frozen head blended with a fine-tuned mpnet, 3 draws.

`bench/fewshot_explore/finetune_names.py` found, on draw 0 at 10 per intent only, that the
average of the frozen head's (with names) and a fine-tuned mpnet's (with names as examples)
calibrated probabilities scored 85.97 against 85.19 for the head alone: 3 texts of 385.
This probe asks whether that holds on every draw and at 5 per intent, before anything is
built on it. Each draw's validation sample (5 per intent outside its 20-shot set); the
test split is not read.

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
        SLMSTACK_PROGRESS=0 .venv/bin/python bench/fewshot_explore/finetune_blend.py --sizes 5

Writes bench/results/fewshot_finetune_blend.json (rows of earlier runs kept; a rerun skips
the (size, draw) pairs already there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_names import FINETUNE, HEAD

from _machine import machine
from fewshot import draw, read

OUT = Path(__file__).resolve().parents[1] / "results" / "fewshot_finetune_blend.json"


def main() -> None:
    from slmstack.skills._label_words import name_texts
    from slmstack.skills.classifier import TextClassifier
    from slmstack.types import Example

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="5,10")
    ap.add_argument("--draws", default="0,1,2")
    args = ap.parse_args()
    done = json.loads(OUT.read_text()) if OUT.exists() else {"rows": []}
    rows: list[dict[str, Any]] = done["rows"]
    texts, labels = read("train")
    classes = sorted(set(labels))
    named = [Example(t, c) for t, c in zip(name_texts(classes), classes, strict=True)]
    for k in map(int, args.sizes.split(",")):
        for seed in map(int, args.draws.split(",")):
            if any(r["per_intent"] == k and r["draw"] == seed for r in rows):
                continue
            tr, va = draw(texts, labels, k, seed, 5)
            examples = [Example(texts[i], labels[i]) for i in tr]
            gold = np.array([classes.index(labels[i]) for i in va])
            va_texts = [texts[i] for i in va]
            row: dict[str, Any] = {"per_intent": k, "draw": seed, "validation_texts": len(va)}
            probs = {}
            for name, cfg, extra in [("head", HEAD, []), ("finetune", FINETUNE, named)]:
                start = time.perf_counter()
                skill = TextClassifier(**cfg).fit(examples + extra)
                assert skill.classes_ == classes
                probs[name] = skill.predict_proba(va_texts)
                row[f"{name}_seconds"] = round(time.perf_counter() - start)
                row[f"{name}_best_epoch"] = getattr(skill, "best_epoch_", None)
            for name, p in [*probs.items(), ("blend", (probs["head"] + probs["finetune"]) / 2)]:
                row[name] = round(float((p.argmax(1) == gold).mean() * 100), 2)
            print(row, flush=True)
            rows.append(row)
            summary = {}
            for size in sorted({r["per_intent"] for r in rows}):
                mine = [r for r in rows if r["per_intent"] == size]
                summary[str(size)] = {n: round(statistics.fmean(r[n] for r in mine), 2)
                                      for n in ("head", "finetune", "blend")}  # fmt: skip
                summary[str(size)]["draws"] = len(mine)
            OUT.write_text(json.dumps({
                "machine": machine(), "split": "validation (each draw's 5 per intent)",
                "head": HEAD, "finetune": FINETUNE | {"name_examples_as_rows": True},
                "rows": rows, "mean": summary,
                "command": "flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 "
                "TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0 .venv/bin/python "
                "bench/fewshot_explore/finetune_blend.py",
            }, indent=1) + "\n")  # fmt: skip
            print(summary, flush=True)


if __name__ == "__main__":
    main()
