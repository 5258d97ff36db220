"""CUAD exploration (validation only): does where a clause sits in its contract help?

Document Name, Parties and Agreement Date sit in a contract's first clauses, signatures
and exhibits in its last, but TF-IDF and the encoder see each clause alone.
``ClauseFinder(position_weight=w)`` appends a position block to each clause's features:
one-hot "first", "second", "third" and "among the last three" clause of its contract, and
its place (index / clauses) in ten bins, scaled by ``w`` against the TF-IDF columns
(``slmstack.skills._clause_fit.position_block``; ``label_clauses`` records each clause's
position). ``w = 0`` is the finder without it. Same protocol as
``encoder_weight.py``: fit on 90 train contracts with 5-fold cross-fitted thresholds,
score the 30 with index % 5 == 1; the test contracts are not read.

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/cuad_explore/position.py [WEIGHT ...]

Weights default to 0.5 and 1. Writes ``bench/results/cuad_position.json``, or
``bench/results/NAME.json`` with ``--out=NAME``.
"""

import json
import sys
import time
from pathlib import Path

import torch
from _common import scored, share_encoders, split, write

from slmstack.skills.clauses import ClauseFinder

ARGS = [a for a in sys.argv[1:] if not a.startswith("--out=")]
NAME = next((a[6:] for a in sys.argv[1:] if a.startswith("--out=")), "cuad_position")
OUT = Path(__file__).resolve().parents[1] / "results" / f"{NAME}.json"
WEIGHTS = tuple(float(w) for w in ARGS) or (0.5, 1.0)
torch.set_num_threads(1)
fit, val, types, yf, yv = split()


share_encoders()
rows = json.loads(OUT.read_text())["rows"] if OUT.exists() else {}
systems = [("TF-IDF + LR (peer)", {"base": None}, 0.0)]
systems += [(f"TF-IDF + LR, position weight {w:g}", {"base": None}, w) for w in WEIGHTS]
systems += [("ClauseFinder (weight 0.25)", {"base": "minilm"}, 0.0)]
systems += [(f"ClauseFinder, position weight {w:g}", {"base": "minilm"}, w) for w in WEIGHTS]
for name, params, w in systems:
    if name in rows:
        continue
    start = time.perf_counter()
    finder = ClauseFinder(max_length=64, val_folds=5, position_weight=w, **params).fit(fit)
    rows[name] = {**params, "position_weight": w,
                  **scored(finder, val, types, yv, time.perf_counter() - start)}  # fmt: skip
    print(name, json.dumps({k: v for k, v in rows[name].items() if k != "types_using_encoder"}),
          flush=True)  # fmt: skip
    write(NAME, rows, args=" ".join(sys.argv[1:]), val_folds=5)
