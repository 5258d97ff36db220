"""Few-shot BANKING77, validation only: does another head on frozen mpnet do better than LR?

The `head` strategy chosen in `bench/fewshot.py` is logistic regression (C 10) on
L2-normalised frozen mpnet vectors. This probe tries the cheap alternatives on the same
vectors, draws and validation samples (3 draws, 5 and 10 per intent; 5 validation texts
per intent outside the draw's 20-shot set; the test split is not read): other C, a
linear SVM, ridge, the nearest class mean (prototypes, cosine), LR's probabilities mixed
with the prototypes' (softmax of cosine × t, weight w), and LR on the examples plus five
copies with Gaussian noise (sd 0.02) re-normalised.

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
        .venv/bin/python bench/fewshot_explore/heads.py

Writes bench/results/fewshot_heads.json.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from self_train import unit, vectors

from _machine import machine
from fewshot import draw, read

OUT = Path(__file__).resolve().parents[1] / "results" / "fewshot_heads.json"


def softmax(z: Any) -> Any:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def draws(
    texts: list[str], labels: list[str], vec: Any
) -> Iterator[tuple[int, int, Any, Any, Any, Any]]:
    """``(draw, k, x_train, y_train, x_val, y_val)`` for the 3 draws at 5 and 10 per intent,
    with L2-normalised vectors; the validation sample is 5 per intent outside the draw."""
    lab = np.array(labels)
    for seed in (0, 1, 2):
        for k in (5, 10):
            tr, va = draw(texts, labels, k, seed, 5)
            yield seed, k, unit(vec[tr]), lab[tr], unit(vec[va]), lab[va]


def main() -> None:
    from sklearn.linear_model import LogisticRegression, RidgeClassifier
    from sklearn.svm import LinearSVC

    texts, labels = read("train")
    vec = vectors("mpnet", texts)
    scores: dict[tuple[int, str], list[float]] = {}
    start = time.time()

    def record(k: int, key: str, pred: Any, yv: Any) -> None:
        scores.setdefault((k, key), []).append(float((pred == yv).mean() * 100))

    for seed, k, xs, ys, xv, yv in draws(texts, labels, vec):
        lr = LogisticRegression(C=10, max_iter=3000).fit(xs, ys)
        proba, classes = lr.predict_proba(xv), lr.classes_
        record(k, "LR C 10 (the head)", classes[proba.argmax(1)], yv)
        for c in (30, 100):
            model = LogisticRegression(C=c, max_iter=5000).fit(xs, ys)
            record(k, f"LR C {c}", model.predict(xv), yv)
        record(k, "linear SVM C 1", LinearSVC(C=1, random_state=0).fit(xs, ys).predict(xv), yv)
        record(k, "ridge alpha 1", RidgeClassifier(alpha=1).fit(xs, ys).predict(xv), yv)
        protos = unit(np.stack([xs[ys == c].mean(0) for c in classes]))
        cosine = xv @ protos.T
        record(k, "prototypes", classes[cosine.argmax(1)], yv)
        for t in (10, 20, 40):
            for w in (0.3, 0.5):
                mixed = (1 - w) * proba + w * softmax(cosine * t)
                record(k, f"LR + prototypes t {t} w {w}", classes[mixed.argmax(1)], yv)
        rng = np.random.default_rng(seed)
        noisy = [unit(xs + rng.normal(0, 0.02, xs.shape)) for _ in range(5)]
        model = LogisticRegression(C=10, max_iter=3000)
        model.fit(np.vstack([xs, *noisy]), np.concatenate([ys] * 6))
        record(k, "LR C 10, noise copies", model.predict(xv), yv)
    write_rows(OUT, "heads.py", scores, round(time.time() - start))


def write_rows(out: Path, script: str, scores: dict[tuple[int, str], list[float]], seconds: int,
               **extra: Any) -> None:  # fmt: skip
    """Print and save the mean validation accuracy of each (examples per intent, head)."""
    rows = [{"per_intent": k, "head": key, "validation_accuracy_mean": round(float(np.mean(v)), 2),
             "per_draw": [round(x, 2) for x in v]} for (k, key), v in scores.items()]  # fmt: skip
    rows.sort(key=lambda r: (r["per_intent"], -r["validation_accuracy_mean"]))
    for r in rows:
        print(r["per_intent"], f"{r['validation_accuracy_mean']:6.2f}", r["head"])
    command = (
        "flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "
        f".venv/bin/python bench/fewshot_explore/{script}"
    )
    result = {"machine": machine(), "split": "validation (5 per intent per draw)",
              "encoder": "mpnet", **extra, "vectors": "frozen, L2-normalised",
              "draws": [0, 1, 2], "rows": rows, "seconds": seconds, "command": command}  # fmt: skip
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
