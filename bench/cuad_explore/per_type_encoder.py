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
import time

import torch
from _common import scored, split, write

from slmstack.skills import clauses
from slmstack.skills.clauses import ClauseFinder

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
    finder = ClauseFinder(
        base=base, max_length=64, val_folds=1, encoder_weight=1.0, position_weight=0.0
    ).fit(fit)
    rows[name] = scored(finder, val, types, yv, time.perf_counter() - start)
    print(name, json.dumps(rows[name]), flush=True)
clauses._f1 = real_f1
write("cuad_per_type_encoder", rows)
