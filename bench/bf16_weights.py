"""bf16 inference: linear weights kept in bf16 (`slmstack.models.bf16`) against autocast.

A `TextClassifier(strategy="head")` on MiniLM, fitted on 10 BANKING77 training texts per
intent (speed only: accuracy is not measured here), predicts BANKING77 test texts three
ways in the same run, taking turns for 3 rounds: fp32; bf16 by autocast over the fp32
weights (each call casts every linear weight, as before `slmstack.models.bf16`); and bf16
with the twin whose linear weights are stored in bf16 (what `precision="bf16"` / `"auto"`
now runs). Single texts (p50 of 200 one-text calls) and batches of 64 (median ms per text
over 10 batches), torch at 1 thread. The two bf16 ways' outputs are compared bit for bit.

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
        SLMSTACK_PROGRESS=0 .venv/bin/python bench/bf16_weights.py

Writes bench/results/bf16_weights.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine
from fewshot import draw, read

OUT = Path(__file__).resolve().parent / "results" / "bf16_weights.json"


def main() -> None:
    import torch

    import slmstack.skills._classifier_training as training
    from slmstack.skills.classifier import TextClassifier
    from slmstack.types import Example

    torch.set_num_threads(1)
    texts, labels = read("train")
    tr, _ = draw(texts, labels, 10, 0, 5)
    clf = TextClassifier(strategy="head").fit([Example(texts[i], labels[i]) for i in tr])
    test, _ = read("test")
    singles, batch = test[:200], test[200:264]
    twin = training.inference_module

    def ways() -> dict[str, tuple[str, Any]]:
        return {"fp32": ("fp32", twin), "bf16 autocast on fp32 weights": ("bf16", None),
                "bf16 weights kept in bf16": ("bf16", twin)}  # fmt: skip

    def use(precision: str, maker: Any) -> None:
        clf.precision = precision  # type: ignore[assignment]
        training.inference_module = maker or (lambda module, _precision: module)

    outputs = {}
    for name, (precision, maker) in ways().items():
        use(precision, maker)
        outputs[name] = clf.predict_proba(batch)
    old, new = outputs["bf16 autocast on fp32 weights"], outputs["bf16 weights kept in bf16"]
    same = bool(np.array_equal(old, new))
    times: dict[str, dict[str, list[float]]] = {n: {"single": [], "batch": []} for n in ways()}
    for _ in range(3):
        for name, (precision, maker) in ways().items():
            use(precision, maker)
            for t in singles[:20]:
                clf.predict([t])
            ms = []
            for t in singles:
                start = time.perf_counter()
                clf.predict([t])
                ms.append((time.perf_counter() - start) * 1000)
            times[name]["single"].append(statistics.median(ms))
            per = []
            for _ in range(10):
                start = time.perf_counter()
                clf.predict(batch)
                per.append((time.perf_counter() - start) * 1000 / len(batch))
            times[name]["batch"].append(statistics.median(per))
    training.inference_module = twin
    rows = [{"way": n, "single_p50_ms_per_round": [round(x, 2) for x in t["single"]],
             "single_p50_ms": round(statistics.median(t["single"]), 2),
             "batch64_ms_per_text_per_round": [round(x, 3) for x in t["batch"]],
             "batch64_ms_per_text": round(statistics.median(t["batch"]), 3)}
            for n, t in times.items()]  # fmt: skip
    for r in rows:
        print(r, flush=True)
    command = (
        "flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "
        "SLMSTACK_PROGRESS=0 .venv/bin/python bench/bf16_weights.py"
    )
    result = {"machine": machine(), "torch_threads": 1, "rows": rows,
              "bf16_outputs_identical": same, "command": command}  # fmt: skip
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"bf16 outputs identical: {same}\nwrote {OUT}")


if __name__ == "__main__":
    main()
