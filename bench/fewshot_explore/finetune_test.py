"""Few-shot BANKING77, test split: the configurations that won on validation in the blend probe.

`bench/fewshot_explore/finetune_blend.py` scored three systems on each draw's validation
sample (3 draws at 5 and 10 per intent; test not read). Mean validation accuracy:

* 5 per intent: average of the two 82.43, frozen head with names 81.73, fine-tuned 81.21;
* 10 per intent: fine-tuned 86.92, average 86.75, frozen head with names 86.23.

The headline of `bench/fewshot.py` (the frozen head with names, test 83.33 / 87.07) was
chosen before that probe, and the probe's winners were not taken to test then (their cost:
10-25 times the training, and the average needs two encoders per prediction). This script
scores the test split once for each size's validation winner, so the protocol's rule
(choose on validation, score the chosen configuration once on test) is followed to the
end: at 5 per intent the average of the frozen head's (with names) and the fine-tuned
mpnet's (names as extra training rows) calibrated probabilities; at 10 per intent the
fine-tuned mpnet alone. The frozen head's test score is recomputed in the same run as the
peer. The same draws, training sets and settings as the probe.

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
        SLMSTACK_PROGRESS=0 .venv/bin/python bench/fewshot_explore/finetune_test.py

Writes bench/results/fewshot_finetune_test.json (a rerun skips the (size, draw) pairs
already there).
"""

from __future__ import annotations

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

OUT = Path(__file__).resolve().parents[1] / "results" / "fewshot_finetune_test.json"
CHOSEN = {5: "blend", 10: "finetune"}  # each size's best mean validation accuracy


def main() -> None:
    from slmstack.skills._label_words import name_texts
    from slmstack.skills.classifier import TextClassifier
    from slmstack.types import Example

    done = json.loads(OUT.read_text()) if OUT.exists() else {"rows": []}
    rows: list[dict[str, Any]] = done["rows"]
    texts, labels = read("train")
    test_texts, test_labels = read("test")
    classes = sorted(set(labels))
    named = [Example(t, c) for t, c in zip(name_texts(classes), classes, strict=True)]
    gold = np.array([classes.index(lab) for lab in test_labels])
    for k, chosen in CHOSEN.items():
        for seed in (0, 1, 2):
            if any(r["per_intent"] == k and r["draw"] == seed for r in rows):
                continue
            tr, _ = draw(texts, labels, k, seed, 5)
            examples = [Example(texts[i], labels[i]) for i in tr]
            row: dict[str, Any] = {"per_intent": k, "draw": seed, "chosen": chosen}
            probs = {}
            for name, cfg, extra in [("head", HEAD, []), ("finetune", FINETUNE, named)]:
                start = time.perf_counter()
                skill = TextClassifier(**cfg).fit(examples + extra)
                assert skill.classes_ == classes
                row[f"{name}_train_seconds"] = round(time.perf_counter() - start)
                probs[name] = skill.predict_proba(test_texts)
                row[f"{name}_best_epoch"] = getattr(skill, "best_epoch_", None)
            probs["blend"] = (probs["head"] + probs["finetune"]) / 2
            for name, p in probs.items():
                row[name] = round(float((p.argmax(1) == gold).mean() * 100), 2)
            print(row, flush=True)
            rows.append(row)
            summary: dict[str, Any] = {}
            for size in sorted({r["per_intent"] for r in rows}):
                mine = [r for r in rows if r["per_intent"] == size]
                summary[str(size)] = {
                    n: {"mean": round(statistics.fmean(r[n] for r in mine), 2),
                        "sd": round(statistics.stdev(r[n] for r in mine), 2)
                        if len(mine) > 1 else None}
                    for n in ("head", "finetune", "blend")
                } | {"draws": len(mine), "chosen_on_validation": CHOSEN[size]}  # fmt: skip
            OUT.write_text(json.dumps({
                "machine": machine(), "split": "test (3,080 texts), scored once per draw",
                "chosen_on": "validation: bench/results/fewshot_finetune_blend.json",
                "head": HEAD, "finetune": FINETUNE | {"name_examples_as_rows": True},
                "rows": rows, "summary": summary,
                "command": "flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 "
                "TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0 .venv/bin/python "
                "bench/fewshot_explore/finetune_test.py",
            }, indent=1) + "\n")  # fmt: skip
            print(summary, flush=True)


if __name__ == "__main__":
    main()
