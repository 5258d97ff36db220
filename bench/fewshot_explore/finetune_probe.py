"""Few-shot BANKING77, validation only: does fine-tuning mpnet beat its frozen head?

``TextClassifier(strategy="finetune", base="mpnet")`` (the probe's head first, then the
encoder tuned with cross-entropy at a low learning rate, the best epoch chosen on the
skill's own held-out tenth) against ``TextClassifier(strategy="head", base="mpnet")``, the
few-shot configuration chosen in `bench/fewshot.py`. Draw 0 at 10 examples per intent and
its validation sample (5 per intent outside the draw's 20-shot set), as in
`bench/fewshot.py`; the test split is not read. One draw: a fine-tuning run costs minutes.

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
        SLMSTACK_PROGRESS=0 .venv/bin/python bench/fewshot_explore/finetune_probe.py

Writes bench/results/fewshot_finetune.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import machine
from fewshot import draw, read

OUT = Path(__file__).resolve().parents[1] / "results" / "fewshot_finetune.json"
CONFIGS: list[dict[str, Any]] = [
    {"strategy": "head", "base": "mpnet"},
    {"strategy": "finetune", "base": "mpnet", "epochs": 5, "learning_rate": 3e-5, "max_length": 48},
    {"strategy": "finetune", "base": "mpnet", "epochs": 6, "patience": 6, "learning_rate": 2e-5,
     "max_length": 48},
]  # fmt: skip


def score_configs(configs: list[dict[str, Any]], k: int, seed: int) -> list[dict[str, Any]]:
    """Fit ``TextClassifier(**cfg)`` on draw ``seed`` at ``k`` per intent; validation accuracy."""
    from slmstack.skills.classifier import TextClassifier
    from slmstack.types import Example

    texts, labels = read("train")
    tr, va = draw(texts, labels, k, seed, 5)
    examples = [Example(texts[i], labels[i]) for i in tr]
    rows = []
    for cfg in configs:
        start = time.perf_counter()
        skill = TextClassifier(**cfg).fit(examples)
        got = [p.label for p in skill.predict([texts[i] for i in va])]
        acc = sum(g == labels[i] for g, i in zip(got, va, strict=True)) / len(va) * 100
        row = {"params": cfg, "validation_accuracy": round(acc, 2),
               "best_epoch": getattr(skill, "best_epoch_", None),
               "seconds": round(time.perf_counter() - start)}  # fmt: skip
        rows.append(row)
        print(row, flush=True)
    return rows


def write(out: Path, script: str, rows: list[dict[str, Any]], k: int, seed: int) -> None:
    command = (
        "flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "
        f"SLMSTACK_PROGRESS=0 .venv/bin/python bench/fewshot_explore/{script}"
    )
    result = {"machine": machine(), "split": f"validation (draw {seed}, 5 per intent)",
              "per_intent": k, "draw": seed, "rows": rows, "command": command}  # fmt: skip
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


def main() -> None:
    k, seed = 10, 0
    write(OUT, "finetune_probe.py", score_configs(CONFIGS, k, seed), k, seed)


if __name__ == "__main__":
    main()
