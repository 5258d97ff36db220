"""Few-shot BANKING77, validation only: do other frozen features beat mpnet alone?

Probes, for `head` on frozen encoders, whether joining features helps at 5 and 10
examples per intent: MiniLM alone, mpnet alone (what `head` on mpnet uses), the two
joined, their class probabilities averaged, and mpnet joined with TF-IDF (word 1-2
grams, or character 2-5 grams within words) at weight 0.5 or 1. Logistic regression at
C 10 and 30 (C 3 and 100 for the single encoders). The draws and validation samples are
`bench/fewshot.py`'s (3 draws; 5 validation texts per intent outside each draw's 20-shot
set); the test split is not read. Vectors are L2-normalised sentence embeddings.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 flock /tmp/slmstack-cpu.lock nice -n 5 \\
        .venv/bin/python bench/fewshot_features.py   # about 8 minutes on 2 cores

Writes bench/results/fewshot_features.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine
from fewshot import draw, read

OUT = Path(__file__).resolve().parent / "results" / "fewshot_features.json"


def main() -> None:
    from scipy import sparse
    from sentence_transformers import SentenceTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from slmstack.models.resolve import resolve

    texts, labels = read("train")
    models = {
        n: SentenceTransformer(str(resolve(n).path), device="cpu") for n in ("minilm", "mpnet")
    }
    cache: dict[str, dict[str, Any]] = {n: {} for n in models}

    def enc(name: str, batch: list[str]) -> Any:
        todo = sorted({t for t in batch if t not in cache[name]})
        if todo:
            vecs = models[name].encode(todo, batch_size=64, normalize_embeddings=True)
            cache[name].update(zip(todo, vecs, strict=True))
        return np.stack([cache[name][t] for t in batch])

    def acc(c: float, a: Any, b: Any, ys: Any, yv: Any) -> float:
        pred = LogisticRegression(C=c, max_iter=2000).fit(a, ys).predict(b)
        return float((pred == yv).mean() * 100)

    scores: dict[str, list[float]] = {}
    start = time.time()
    for seed in (0, 1, 2):
        for k in (5, 10):
            tr, va = draw(texts, labels, k, seed, 5)
            xs, xv = [texts[i] for i in tr], [texts[i] for i in va]
            ys, yv = np.array([labels[i] for i in tr]), np.array([labels[i] for i in va])
            mini, mp = (enc("minilm", xs), enc("minilm", xv)), (enc("mpnet", xs), enc("mpnet", xv))
            feats: dict[str, tuple[Any, Any]] = {"minilm": mini, "mpnet": mp}
            feats["minilm+mpnet joined"] = (
                np.hstack([mini[0], mp[0]]),
                np.hstack([mini[1], mp[1]]),
            )
            for analyzer, ngrams in (("word", (1, 2)), ("char_wb", (2, 5))):
                tf = TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams, sublinear_tf=True)
                a, b = tf.fit(xs).transform(xs), tf.transform(xv)
                for w in (0.5, 1.0):
                    feats[f"mpnet+tfidf {analyzer} x{w:g}"] = (
                        sparse.hstack([sparse.csr_matrix(mp[0]), w * a]).tocsr(),
                        sparse.hstack([sparse.csr_matrix(mp[1]), w * b]).tocsr(),
                    )
            for name, (a, b) in feats.items():
                grid = (3.0, 10.0, 30.0, 100.0) if name in ("minilm", "mpnet") else (10.0, 30.0)
                for c in grid:
                    scores.setdefault(f"{k}|{name}|C{c:g}", []).append(acc(c, a, b, ys, yv))
            for c in (10.0, 30.0):
                fits = [LogisticRegression(C=c, max_iter=2000).fit(f[0], ys) for f in (mini, mp)]
                proba = sum(m.predict_proba(f[1]) for m, f in zip(fits, (mini, mp), strict=True))
                hit = fits[0].classes_[np.asarray(proba).argmax(1)] == yv
                scores.setdefault(f"{k}|minilm, mpnet probabilities averaged|C{c:g}", []).append(
                    float(hit.mean() * 100)
                )
            print(f"draw {seed}, {k} per intent: {time.time() - start:.0f} s", flush=True)
    rows = []
    for key, values in scores.items():
        k, name, c = key.split("|")
        rows.append({"per_intent": int(k), "features": name, "C": float(c[1:]),
                     "validation_accuracy_mean": round(float(np.mean(values)), 2),
                     "per_draw": [round(v, 2) for v in values]})  # fmt: skip
    rows.sort(key=lambda r: (r["per_intent"], -r["validation_accuracy_mean"]))
    for r in rows:
        print(r["per_intent"], f"{r['validation_accuracy_mean']:6.2f}", r["features"], r["C"])
    command = "flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python bench/fewshot_features.py"
    result = {"machine": machine(), "split": "validation (5 per intent per draw)",
              "draws": [0, 1, 2], "rows": rows, "command": command}  # fmt: skip
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
