"""CUAD exploration (validation only): tuning the thresholds and the per-type encoder
choice on one held-out fifth of the fit contracts (``val_folds=1``, the method before)
against cross-fitting (``val_folds=5``: every fit contract held out once, by one of five
fits), for the ``ClauseFinder`` and its TF-IDF peer (``ClauseFinder(base=None)``) alike.

Same split and encoder window as ``per_type_encoder.py``; the encoder at full weight
(``encoder_weight=1``), as it was then.

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/cuad_explore/cross_fit.py

Writes ``bench/results/cuad_cross_fit.json`` (about 15 minutes on 2 cores).
"""

import json
import time

import torch
from _common import scored, split, write

from slmstack.skills.clauses import ClauseFinder

torch.set_num_threads(1)
fit, val, types, yf, yv = split()
print(len(fit), len(val), flush=True)

rows = {}
for name, base, folds in (
    ("TF-IDF + LR (peer), one held-out fifth", None, 1),
    ("TF-IDF + LR (peer), 5-fold cross-fit", None, 5),
    ("ClauseFinder, one held-out fifth (before)", "minilm", 1),
    ("ClauseFinder, 5-fold cross-fit", "minilm", 5),
):
    start = time.perf_counter()
    finder = ClauseFinder(
        base=base, max_length=64, val_folds=folds, encoder_weight=1.0, position_weight=0.0
    ).fit(fit)
    rows[name] = {"val_folds": folds, **scored(finder, val, types, yv, time.perf_counter() - start)}
    print(name, json.dumps(rows[name]), flush=True)
write("cuad_cross_fit", rows)
