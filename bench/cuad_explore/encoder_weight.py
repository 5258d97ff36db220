"""CUAD exploration (validation only): the scale of the encoder's vector against the
TF-IDF columns (``ClauseFinder(encoder_weight=...)``), with the per-type encoder choice
and 5-fold cross-fitted thresholds, against the TF-IDF peer (``ClauseFinder(base=None)``)
tuned the same way.

Joining 384 dense columns to TF-IDF lets the L2-regularised regression fit noise on the
common types (precision falls); a smaller scale makes those columns costlier to use, so
a type leans on them only where they pay. The validation split of ``_common.py`` (fit on
90 train contracts, score the 30 with index % 5 == 1; the test contracts are not read).
Encoder window 64 tokens, as in ``bench/cuad.py``'s run; the clauses are encoded once and
the vectors shared by the variants (one ``FrozenEncoder`` for all fits).

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/cuad_explore/encoder_weight.py [WEIGHT ...]

Weights default to 1, 0.5 and 0.25. Writes ``bench/results/cuad_encoder_weight.json``,
adding its rows to those already there (about 12 minutes on 2 cores for the defaults).
"""

import json
import sys
import time
from pathlib import Path

import torch
from _common import scored, share_encoders, split, write

from slmstack.skills.clauses import ClauseFinder

OUT = Path(__file__).resolve().parents[1] / "results" / "cuad_encoder_weight.json"
WEIGHTS = tuple(float(w) for w in sys.argv[1:]) or (1.0, 0.5, 0.25)
SLOW = "train_s (the first encoder fit encodes; the others reuse its vectors)"
torch.set_num_threads(1)
fit, val, types, yf, yv = split()
print(len(fit), len(val), flush=True)

share_encoders()
rows = json.loads(OUT.read_text())["rows"] if OUT.exists() else {}
systems = [("TF-IDF + LR (peer)", {"base": None})] + [
    (f"ClauseFinder, encoder weight {w:g}", {"base": "minilm", "encoder_weight": w})
    for w in WEIGHTS
]
for name, params in systems:
    start = time.perf_counter()
    finder = ClauseFinder(max_length=64, val_folds=5, position_weight=0.0, **params).fit(fit)
    row = scored(finder, val, types, yv, time.perf_counter() - start)
    row[SLOW] = row.pop("train_s")
    rows[name] = {**params, **row, "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(name, json.dumps(rows[name]), flush=True)
write("cuad_encoder_weight", rows, args=" ".join(sys.argv[1:]), val_folds=5)
