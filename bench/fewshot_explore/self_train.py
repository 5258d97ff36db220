"""Few-shot BANKING77, validation only: do unlabelled queries help a frozen-encoder head?

A team that starts with a few labelled examples per intent usually also has many
*unlabelled* queries: the proxy of the migration loop records them. This probe asks
whether they help `head` on frozen mpnet (the few-shot configuration chosen on
validation in `bench/fewshot.py`), with methods that need no extra model:

* ``centre``: subtract a mean vector before L2 normalisation (SimpleShot's CL2N), the mean
  of the labelled examples (needs no unlabelled text) or of the unlabelled pool;
* ``self-train``: fit the head, add for each intent the ``m`` pool queries it is most
  confident belong to it (weight ``w``), refit; ``rounds`` times;
* ``spread``: scikit-learn's label spreading over a k-nearest-neighbour graph of labelled
  and pool vectors.

Data: the draws and validation samples of `bench/fewshot.py` (3 draws, 5 and 10 per
intent; 5 validation texts per intent outside the draw's 20-shot set). The pool is every
other BANKING77 *training* text (labels hidden), minus the draw's 20-shot set and its
validation sample; the test split is not read. Logistic regression at C=10 (the `head`
default) on L2-normalised vectors.

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
        .venv/bin/python bench/fewshot_explore/self_train.py

Writes bench/results/fewshot_self_train.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import machine
from fewshot import draw, read

BENCH = Path(__file__).resolve().parents[1]
OUT = BENCH / "results" / "fewshot_self_train.json"
CACHE = Path("/tmp/slmstack-banking-vectors")
C = 10.0


def vectors(name: str, texts: list[str]) -> Any:
    """Raw (not normalised) sentence vectors of every training text, cached outside the repo."""
    path = CACHE / f"{name}-train.npy"
    if path.exists():
        return np.load(path)
    from sentence_transformers import SentenceTransformer

    from slmstack.models.resolve import resolve

    model = SentenceTransformer(str(resolve(name).path), device="cpu")
    vecs = model.encode(texts, batch_size=64, show_progress_bar=False)
    CACHE.mkdir(exist_ok=True)
    np.save(path, vecs)
    return vecs


def unit(x: Any) -> Any:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fit(x: Any, y: Any, weight: Any = None) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=3000).fit(x, y, sample_weight=weight)


def self_train(xs: Any, ys: Any, pool: Any, m: int, w: float, rounds: int) -> Any:
    model = fit(xs, ys)
    for _ in range(rounds):
        proba = model.predict_proba(pool)
        best = proba.argmax(1)
        conf = proba.max(1)
        picked: list[int] = []
        for c in range(len(model.classes_)):
            idx = np.flatnonzero(best == c)
            picked.extend(idx[np.argsort(-conf[idx])[:m]].tolist())
        x = np.vstack([xs, pool[picked]])
        y = np.concatenate([ys, model.classes_[best[picked]]])
        weight = np.concatenate([np.ones(len(ys)), np.full(len(picked), w)])
        model = fit(x, y, weight)
    return model


def spread(xs: Any, ys: Any, pool: Any, xv: Any, k: int, alpha: float) -> Any:
    from sklearn.semi_supervised import LabelSpreading

    classes, codes = np.unique(ys, return_inverse=True)
    x = np.vstack([xs, pool])
    y = np.concatenate([codes, np.full(len(pool), -1)])
    model = LabelSpreading(kernel="knn", n_neighbors=k, alpha=alpha, max_iter=100).fit(x, y)
    # Label the validation texts by their pool neighbours' spread labels (inductive use).
    return classes[model.predict(xv)]


def main() -> None:
    texts, labels = read("train")
    lab = np.array(labels)
    raw = {n: vectors(n, texts) for n in ("mpnet",)}
    scores: dict[str, list[float]] = {}
    start = time.time()

    def record(key: str, pred: Any, yv: Any) -> None:
        scores.setdefault(key, []).append(float((pred == yv).mean() * 100))

    for seed in (0, 1, 2):
        for k in (5, 10):
            tr, va = draw(texts, labels, k, seed, 5)
            tr20, _ = draw(texts, labels, 20, seed, 5)
            held = set(tr20) | set(va)
            pool_idx = np.array([i for i in range(len(texts)) if i not in held])
            ys, yv = lab[tr], lab[va]
            for name, vec in raw.items():
                views = {
                    "plain": (unit(vec[tr]), unit(vec[va]), unit(vec[pool_idx])),
                    "centre on labelled": tuple(
                        unit(vec[i] - vec[tr].mean(0)) for i in (tr, va, pool_idx)
                    ),
                    "centre on pool": tuple(
                        unit(vec[i] - vec[pool_idx].mean(0)) for i in (tr, va, pool_idx)
                    ),
                }
                for view, (xs, xv, pool) in views.items():
                    record(f"{k}|{name}|{view}|head", fit(xs, ys).predict(xv), yv)
                    if view == "centre on labelled":
                        continue
                    for m, w, rounds in ((10, 1.0, 1), (20, 1.0, 1), (20, 0.5, 2), (40, 0.5, 2)):
                        model = self_train(xs, ys, pool, m, w, rounds)
                        record(f"{k}|{name}|{view}|self-train m{m} w{w:g} r{rounds}",
                               model.predict(xv), yv)  # fmt: skip
                    if view == "plain":
                        for nn, alpha in ((10, 0.2), (20, 0.5)):
                            record(f"{k}|{name}|{view}|spread knn{nn} a{alpha:g}",
                                   spread(xs, ys, pool, xv, nn, alpha), yv)  # fmt: skip
            print(f"draw {seed}, {k} per intent: {time.time() - start:.0f} s", flush=True)
    rows = []
    for key, values in scores.items():
        k, name, view, method = key.split("|")
        rows.append({"per_intent": int(k), "encoder": name, "view": view, "method": method,
                     "validation_accuracy_mean": round(float(np.mean(values)), 2),
                     "per_draw": [round(v, 2) for v in values]})  # fmt: skip
    rows.sort(key=lambda r: (r["per_intent"], -r["validation_accuracy_mean"]))
    for r in rows:
        print(r["per_intent"], f"{r['validation_accuracy_mean']:6.2f}", r["view"], r["method"])
    command = (
        "flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "
        ".venv/bin/python bench/fewshot_explore/self_train.py"
    )
    result = {"machine": machine(), "split": "validation (5 per intent per draw)",
              "pool": "BANKING77 train minus each draw's 20-shot set and validation sample",
              "draws": [0, 1, 2], "rows": rows, "seconds": round(time.time() - start),
              "command": command}  # fmt: skip
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
