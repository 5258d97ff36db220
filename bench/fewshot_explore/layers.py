"""Few-shot BANKING77, validation only: do mpnet's other layers help the frozen head?

The shipped few-shot head is logistic regression (C 10) on L2-normalised frozen mpnet
sentence vectors (mean-pooled last layer). Linear probes often gain from earlier layers
too, so this probe tries, on the same draws and validation samples (3 draws, 5 and 10 per
intent; 5 validation texts per intent outside the draw's 20-shot set; the test split is
not read): the mean-pooled last layer alone (the head), the [CLS] vector, the mean of
the last 4 layers, and the last layer joined with one or three earlier layers (each part
L2-normalised, then the whole), with C 10 and C 30.

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
        .venv/bin/python bench/fewshot_explore/layers.py

Writes bench/results/fewshot_layers.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from heads import write_rows
from self_train import unit

from fewshot import draw, read

OUT = Path(__file__).resolve().parents[1] / "results" / "fewshot_layers.json"
DRAWS = (0, 1, 2)
SIZES = (5, 10)


def hidden_states(texts: list[str]) -> dict[str, Any]:
    """Per text: mean-pooled hidden state of every layer (``mean{i}``) and the first token."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from slmstack.models.resolve import resolve

    path = str(resolve("mpnet").path)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    torch.set_num_threads(2)
    parts: dict[str, list[Any]] = {}
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            batch = tok(texts[start : start + 64], padding=True, truncation=True,
                        max_length=128, return_tensors="pt")  # fmt: skip
            out = model(**batch, output_hidden_states=True)
            mask = batch["attention_mask"].unsqueeze(-1).float()
            for i, h in enumerate(out.hidden_states):
                pooled = (h * mask).sum(1) / mask.sum(1)
                parts.setdefault(f"mean{i}", []).append(pooled.numpy())
            parts.setdefault("cls", []).append(out.hidden_states[-1][:, 0].numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def features(h: dict[str, Any], idx: list[int]) -> dict[str, Any]:
    last = len([k for k in h if k.startswith("mean")]) - 1
    m = {i: unit(h[f"mean{i}"][idx]) for i in range(last - 3, last + 1)}
    return {
        "mean last layer (the head)": m[last],
        "cls last layer": unit(h["cls"][idx]),
        "mean last + cls": unit(np.hstack([m[last], unit(h["cls"][idx])])),
        "mean of last 4 layers": unit(sum(h[f"mean{i}"][idx] for i in m)),
        "mean last + layer -2": unit(np.hstack([m[last], m[last - 1]])),
        "mean last + layers -2..-4": unit(np.hstack([m[i] for i in sorted(m, reverse=True)])),
        "mean last, each of 4 layers normalised then averaged": unit(sum(m.values())),
    }


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    texts, labels = read("train")
    lab = np.array(labels)
    splits = {}
    for seed in DRAWS:
        for k in SIZES:
            splits[seed, k] = draw(texts, labels, k, seed, 5)
    needed = sorted({i for tr, va in splits.values() for i in (*tr, *va)})
    start = time.time()
    h_all = hidden_states([texts[i] for i in needed])
    where = {i: n for n, i in enumerate(needed)}
    print(f"encoded {len(needed)} texts in {time.time() - start:.0f} s")
    scores: dict[tuple[int, str], list[float]] = {}
    for (_seed, k), (tr, va) in splits.items():
        ftr = features(h_all, [where[i] for i in tr])
        fva = features(h_all, [where[i] for i in va])
        for name in ftr:
            for c in (10, 30):
                model = LogisticRegression(C=c, max_iter=5000).fit(ftr[name], lab[tr])
                acc = float((model.predict(fva[name]) == lab[va]).mean() * 100)
                scores.setdefault((k, f"{name}, C {c}"), []).append(acc)
    write_rows(OUT, "layers.py", scores, round(time.time() - start), texts_encoded=len(needed))


if __name__ == "__main__":
    main()
