"""Validation only: does adding each intent's name as one more example help head on mpnet?

Draw 0 of ``bench/fewshot.py`` at 5 and 10 examples per intent, scored on its validation
sample (5 texts per intent from train, outside the draw); the test split is not read.
Measured 2026-12-02 15:50 UTC (AMD EPYC, 2 cores): 5 per intent 79.48 -> 80.26,
10 per intent 84.68 -> 85.19.

    flock /tmp/slmstack-cpu.lock env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
        SLMSTACK_PROGRESS=0 .venv/bin/python bench/fewshot_label_names.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fewshot as fs
from slmstack import TextClassifier
from slmstack.types import Example

tr_x, tr_y = fs.read("train")
for k in (5, 10):
    train, val = fs.draw(tr_x, tr_y, k, 0, 5)
    xs, ys = [tr_x[i] for i in train], [tr_y[i] for i in train]
    vx, vy = [tr_x[i] for i in val], [tr_y[i] for i in val]
    names = sorted(set(ys))
    for tag, extra in (
        ("plain", []),
        ("+label names", [(n.replace("_", " ").replace("?", ""), n) for n in names]),
    ):
        ex = [Example(t, y) for t, y in zip(xs, ys, strict=True)] + [
            Example(t, y) for t, y in extra
        ]
        clf = TextClassifier(strategy="head", base="mpnet", precision="fp32", seed=0).fit(ex)
        acc = sum(p.label == g for p, g in zip(clf.predict(vx), vy, strict=True)) / len(vy)
        print(k, tag, round(100 * acc, 2), flush=True)
