"""Few-shot BANKING77, validation only: what should ``strategy="auto"`` train below 5 per label?

``auto`` trained ``fewshot`` (SetFit's contrastive tuning) when the median label had fewer
than 5 examples (``FEWSHOT_BELOW``, removed after this probe), on SetFit's prior: at 5,
10 and 20 per intent ``fewshot`` lost to ``head`` (``bench/fewshot.py``), but below 5 it
had never been measured.
This probe trains both, with the product's defaults on the default base (MiniLM), at 2 and
3 examples per intent, on the 3 draws of ``bench/fewshot.py`` (the first ``k`` of each
draw's permutation) and scores each on its validation sample (5 per intent outside the
draw's 20-shot set); the test split is not read.

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
        SLMSTACK_PROGRESS=0 .venv/bin/python bench/fewshot_explore/tiny.py

Writes bench/results/fewshot_tiny.json.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_probe import score_configs

from _machine import machine

OUT = Path(__file__).resolve().parents[1] / "results" / "fewshot_tiny.json"
CONFIGS: list[dict[str, Any]] = [
    {"strategy": "head", "scope_alpha": 0.0},
    {"strategy": "fewshot", "scope_alpha": 0.0},
    {"strategy": "head", "scope_alpha": 0.0, "name_examples": True},
]


def main() -> None:
    rows = []
    for k in (2, 3):
        for seed in (0, 1, 2):
            for row in score_configs(CONFIGS, k, seed):
                rows.append({"per_intent": k, "draw": seed, **row})
    summary = []
    for k in (2, 3):
        for cfg in CONFIGS:
            accs = [r["validation_accuracy"] for r in rows
                    if r["per_intent"] == k and r["params"] == cfg]  # fmt: skip
            summary.append({"per_intent": k, "params": cfg,
                            "validation_accuracy_mean": round(statistics.mean(accs), 2),
                            "per_draw": accs})  # fmt: skip
            print(summary[-1], flush=True)
    command = (
        "flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "
        "SLMSTACK_PROGRESS=0 .venv/bin/python bench/fewshot_explore/tiny.py"
    )
    result = {"machine": machine(), "split": "validation (5 per intent per draw)",
              "base": "minilm", "summary": summary, "rows": rows, "command": command}  # fmt: skip
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
