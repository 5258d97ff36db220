"""Few-shot BANKING77, validation only: SetFit's own number of steps on mpnet.

``bench/fewshot.py`` ran the ``fewshot`` strategy (SetFit's contrastive tuning) with the
few hundred steps a shared 2-core CPU allowed, on MiniLM, and it lost to the frozen head.
This probe gives it SetFit's default of 20 pair iterations, on mpnet, in bf16 where the
CPU has it (AMX here), against the frozen ``head`` on mpnet chosen in ``bench/fewshot.py``.
Draw 0 at 10 examples per intent and its validation sample (5 per intent outside the
draw's 20-shot set); the test split is not read. One draw: a run costs many minutes, so
a rerun scores only the configurations the result file does not hold yet.

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
        SLMSTACK_PROGRESS=0 .venv/bin/python bench/fewshot_explore/setfit_long.py

Writes bench/results/fewshot_setfit_long.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_probe import score_configs, write

OUT = Path(__file__).resolve().parents[1] / "results" / "fewshot_setfit_long.json"
COMMON = {"strategy": "fewshot", "base": "mpnet", "max_length": 48, "precision": "bf16",
          "epochs": 1, "patience": 1}  # fmt: skip
CONFIGS: list[dict[str, Any]] = [
    {"strategy": "head", "base": "mpnet"},
    {**COMMON, "pairing": "in_batch", "pair_iterations": 20, "pair_learning_rate": 2e-5},
    # SetFit's own: sampled pairs, 16 a step, 20 iterations (about 1,900 steps)
    {**COMMON, "pairing": "sampled", "pair_iterations": 20, "pair_learning_rate": 2e-5,
     "batch_size": 16},
]  # fmt: skip


def main() -> None:
    """Score each configuration not yet in the result file; save after each one."""
    k, seed = 10, 0
    rows = json.loads(OUT.read_text())["rows"] if OUT.exists() else []
    for cfg in CONFIGS:
        if all(row["params"] != cfg for row in rows):
            rows += score_configs([cfg], k, seed)
            write(OUT, "setfit_long.py", rows, k, seed)


if __name__ == "__main__":
    main()
