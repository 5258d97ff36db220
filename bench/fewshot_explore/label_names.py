"""Few-shot BANKING77, validation only: do the intents' own names help the frozen head?

A team that labels ten examples per intent also names each intent (``card_arrival``,
``exchange_rate``). This probe adds each name, read as words ("card arrival"), as one more
example of its intent (its mpnet vector at weight ``w``), or as a templated question
("a question about card arrival"), and, separately, mixes the logistic-regression
probabilities with the cosine to the name's vector; with the head's C at 10 and 30, and
with both phrasings as examples. Same vectors, draws and validation
samples as ``heads.py`` (3 draws, 5 and 10 per intent, 5 validation texts per intent
outside the draw's 20-shot set; the test split is not read).

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
        .venv/bin/python bench/fewshot_explore/label_names.py

Writes bench/results/fewshot_label_names.json (``--encoder minilm``: ``..._minilm.json``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from heads import draws, softmax, write_rows
from self_train import unit, vectors

from fewshot import read

OUT = Path(__file__).resolve().parents[1] / "results" / "fewshot_label_names.json"
TEMPLATES = {"name": "{}", "question": "a question about {}"}


def encode(texts: list[str], encoder: str) -> Any:
    from sentence_transformers import SentenceTransformer

    from slmstack.models.resolve import resolve

    model = SentenceTransformer(str(resolve(encoder).path), device="cpu")
    return model.encode(texts, batch_size=64, show_progress_bar=False)


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", default="mpnet", help="mpnet (the few-shot choice) or minilm")
    encoder = ap.parse_args().encoder
    texts, labels = read("train")
    vec = vectors(encoder, texts)
    classes = np.array(sorted(set(labels)))
    words = [c.replace("_", " ").lower() for c in classes]
    named = {t: unit(encode([f.format(w) for w in words], encoder)) for t, f in TEMPLATES.items()}
    scores: dict[tuple[int, str], list[float]] = {}
    start = time.time()

    def record(k: int, key: str, pred: Any, yv: Any) -> None:
        scores.setdefault((k, key), []).append(float((pred == yv).mean() * 100))

    both = np.vstack(list(named.values()))
    for _, k, xs, ys, xv, yv in draws(texts, labels, vec):
        lr = LogisticRegression(C=10, max_iter=3000).fit(xs, ys)
        assert list(lr.classes_) == list(classes)
        proba = lr.predict_proba(xv)
        record(k, "LR C 10 (the head)", classes[proba.argmax(1)], yv)
        for c in (10.0, 30.0):
            model = LogisticRegression(C=c, max_iter=5000)
            model.fit(np.vstack([xs, both]), np.concatenate([ys, classes, classes]))
            record(k, f"name and question as examples, C {c:g}", model.predict(xv), yv)
        for t, names in named.items():
            record(k, f"{t} vector alone (zero-shot)", classes[(xv @ names.T).argmax(1)], yv)
            for w in (1.0, 3.0):
                weight = np.concatenate([np.ones(len(ys)), np.full(len(classes), w)])
                model = LogisticRegression(C=10, max_iter=3000)
                model.fit(np.vstack([xs, names]), np.concatenate([ys, classes]), weight)
                record(k, f"{t} as an example, weight {w}", model.predict(xv), yv)
                for c in (30.0,):
                    model = LogisticRegression(C=c, max_iter=5000)
                    model.fit(np.vstack([xs, names]), np.concatenate([ys, classes]), weight)
                    record(k, f"{t} as an example, weight {w}, C {c:g}", model.predict(xv), yv)
            for w in (0.1, 0.2):
                mixed = (1 - w) * proba + w * softmax((xv @ names.T) * 20)
                record(k, f"LR mixed with {t} cosine, w {w}", classes[mixed.argmax(1)], yv)
    out, script = OUT, "label_names.py"
    if encoder != "mpnet":
        out = OUT.with_name(f"{OUT.stem}_{encoder}.json")
        script += f" --encoder {encoder}"
    write_rows(out, script, scores, round(time.time() - start), encoder=encoder,
               templates=TEMPLATES)  # fmt: skip


if __name__ == "__main__":
    main()
