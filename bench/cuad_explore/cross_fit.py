"""CUAD exploration (validation only): tuning the thresholds and the per-type encoder
choice on one held-out fifth of the fit contracts (``val_folds=1``, the method before)
against cross-fitting (``val_folds=5``: every fit contract held out once, by one of five
fits), for the ``ClauseFinder`` and its TF-IDF peer (``ClauseFinder(base=None)``) alike.

The validation split of ``_common.py`` (fit on 90 train contracts, score the 30 with index
% 5 == 1; the test contracts are not read). Encoder window 64 tokens, as in
``bench/cuad.py``'s run. The encoder's vectors are computed once per system.

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/cuad_explore/cross_fit.py

Writes ``bench/results/cuad_cross_fit.json`` (about 15 minutes on 2 cores).
"""

import json
import sys
import time
from pathlib import Path

import torch
from _common import micro_macro, split

from slmstack.skills.clauses import ClauseFinder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import machine

OUT = Path(__file__).resolve().parents[1] / "results" / "cuad_cross_fit.json"
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
    finder = ClauseFinder(base=base, max_length=64, val_folds=folds).fit(fit)
    p = finder.predict_clauses([e.text for e in val])
    cols = [finder.types_.index(t) for t in types]
    micro, macro = micro_macro(p[:, cols], finder.thresholds_[cols], yv)
    used = [t for t, u in zip(finder.types_, finder.uses_encoder_, strict=True) if u]
    rows[name] = {
        "val_folds": folds,
        "validation_micro_f1": round(float(micro), 2),
        "validation_macro_f1": round(float(macro), 2),
        "held_out_micro_f1": round(100 * finder.metrics_["val_micro_f1"], 2),
        "types_using_encoder": used,
        "train_s": round(time.perf_counter() - start, 1),
    }
    print(name, json.dumps(rows[name]), flush=True)
result = {
    "split": "validation: 30 train contracts with index % 5 == 1 (test contracts not read)",
    "rows": rows,
    "machine": machine(),
    "command": "flock /tmp/slmstack-cpu.lock .venv/bin/python bench/cuad_explore/cross_fit.py",
}
OUT.write_text(json.dumps(result, indent=1) + "\n")
print(f"wrote {OUT}")
