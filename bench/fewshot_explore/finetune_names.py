"""Few-shot BANKING77, validation only: fine-tuned mpnet with the labels' names, and ensembles.

The frozen head with names (`bench/fewshot.py`'s choice) against ``strategy="finetune"`` on
mpnet, plain and with each label's name (read as words) added as one more training
example, and the average of the head's and a fine-tuned skill's calibrated
probabilities (their errors may differ). Draw 0 at 10 examples per intent and its
validation sample (5 per intent outside the draw's 20-shot set), as in
`bench/fewshot_explore/finetune_probe.py`; the test split is not read.

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
        SLMSTACK_PROGRESS=0 .venv/bin/python bench/fewshot_explore/finetune_names.py

Writes bench/results/fewshot_finetune_names.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_probe import write

from fewshot import draw, read

OUT = Path(__file__).resolve().parents[1] / "results" / "fewshot_finetune_names.json"
HEAD: dict[str, Any] = {"strategy": "head", "base": "mpnet", "head_c": 10.0,
                        "name_examples": True}  # fmt: skip
FINETUNE: dict[str, Any] = {"strategy": "finetune", "base": "mpnet", "epochs": 6, "patience": 6,
                            "learning_rate": 2e-5, "max_length": 48}  # fmt: skip


def main() -> None:
    from slmstack.skills._label_words import name_texts
    from slmstack.skills.classifier import TextClassifier
    from slmstack.types import Example

    k, seed = 10, 0
    texts, labels = read("train")
    tr, va = draw(texts, labels, k, seed, 5)
    examples = [Example(texts[i], labels[i]) for i in tr]
    classes = sorted(set(labels))
    named = [Example(t, c) for t, c in zip(name_texts(classes), classes, strict=True)]
    gold = np.array([classes.index(labels[i]) for i in va])
    va_texts = [texts[i] for i in va]

    probs: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []

    def score(name: str, p: Any, params: Any, seconds: float | None, epoch: Any = None) -> None:
        acc = float((p.argmax(1) == gold).mean() * 100)
        row = {"system": name, "params": params, "validation_accuracy": round(acc, 2),
               "best_epoch": epoch,
               "seconds": None if seconds is None else round(seconds)}  # fmt: skip
        rows.append(row)
        print(row, flush=True)

    for name, cfg, extra in [
        ("head + names (frozen)", HEAD, []),
        ("finetune", FINETUNE, []),
        ("finetune + names as examples", FINETUNE, named),
    ]:
        start = time.perf_counter()
        skill = TextClassifier(**cfg).fit(examples + extra)
        assert skill.classes_ == classes
        probs[name] = skill.predict_proba(va_texts)
        epoch = getattr(skill, "best_epoch_", None)
        score(name, probs[name], cfg, time.perf_counter() - start, epoch)
    for other in ("finetune", "finetune + names as examples"):
        mixed = (probs["head + names (frozen)"] + probs[other]) / 2
        score(f"mean of head + names and {other}", mixed, "probabilities averaged", None)
    write(OUT, "finetune_names.py", rows, k, seed)


if __name__ == "__main__":
    main()
