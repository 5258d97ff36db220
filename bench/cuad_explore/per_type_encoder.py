"""CUAD exploration (validation only): ``ClauseFinder`` choosing per type whether to use the
encoder, against the same finder with the encoder on every type (the method before) and
against its TF-IDF peer (``ClauseFinder(base=None)``).

The validation split of ``_common.py`` (fit on 90 train contracts, score the 30 with index
% 5 == 1; the test contracts are not read). Every system tunes its thresholds, and the
finder its per-type choice, on its own held-out 20% of the fit contracts. "Encoder on
every type" is the same code with the choice forced (the TF-IDF-only regression never
wins the held-out comparison). Encoder window 64 tokens, as in ``bench/cuad.py``'s run.

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/cuad_explore/per_type_encoder.py

Writes ``bench/results/cuad_per_type_encoder.json`` (about 8 minutes on 2 cores).
"""

import json
import sys
import time
from pathlib import Path

import torch
from _common import micro_macro, split

from slmstack.skills import clauses
from slmstack.skills.clauses import ClauseFinder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import machine

OUT = Path(__file__).resolve().parents[1] / "results" / "cuad_per_type_encoder.json"
torch.set_num_threads(1)
fit, val, types, yf, yv = split()
print(len(fit), len(val), flush=True)
real_f1 = clauses._f1


_CALLS = iter(range(10**9))


def never_words(pred, y):
    """The held-out comparison scores the TF-IDF-only regression first: it never wins."""
    return 0.0 if next(_CALLS) % 2 == 0 else 1.0


rows = {}
for name, base, f1 in (
    ("TF-IDF + LR (peer)", None, real_f1),
    ("ClauseFinder, encoder on every type (before)", "minilm", never_words),
    ("ClauseFinder, encoder chosen per type (now)", "minilm", real_f1),
):
    clauses._f1 = f1
    start = time.perf_counter()
    finder = ClauseFinder(base=base, max_length=64).fit(fit)
    p = finder.predict_clauses([e.text for e in val])
    cols = [finder.types_.index(t) for t in types]
    micro, macro = micro_macro(p[:, cols], finder.thresholds_[cols], yv)
    used = [t for t, u in zip(finder.types_, finder.uses_encoder_, strict=True) if u]
    rows[name] = {
        "validation_micro_f1": round(float(micro), 2),
        "validation_macro_f1": round(float(macro), 2),
        "held_out_micro_f1": round(100 * finder.metrics_["val_micro_f1"], 2),
        "types_using_encoder": used,
        "train_s": round(time.perf_counter() - start, 1),
    }
    print(name, json.dumps(rows[name]), flush=True)
clauses._f1 = real_f1
result = {
    "split": "validation: 30 train contracts with index % 5 == 1 (test contracts not read)",
    "rows": rows,
    "machine": machine(),
    "command": "flock /tmp/slmstack-cpu.lock .venv/bin/python "
    "bench/cuad_explore/per_type_encoder.py",
}
OUT.write_text(json.dumps(result, indent=1) + "\n")
print(f"wrote {OUT}")
