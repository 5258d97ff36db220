"""CUAD exploration (validation only): how to join TF-IDF and MiniLM so the encoder pays.

Validation = clauses of train contracts with index % 5 == 1; fit on the other train
contracts. The test contracts (index % 5 == 0) are never touched here. Tries TF-IDF
alone (C 4, 8, 16), TF-IDF joined with the frozen MiniLM vector scaled by w (the
ClauseFinder's features at w = 1), the MiniLM vector alone, and a late fusion
a * p(TF-IDF) + (1 - a) * p(MiniLM), each at 128 and 256 encoder tokens; every threshold
is tuned on the skill's held-out 20%.

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/cuad_explore/frozen_fusion.py \
        > /tmp/cuad_exp.log 2>&1
"""

import time
from pathlib import Path

import numpy as np
import torch
from _common import micro_macro, probs, split, tfidf, thresholds
from scipy import sparse

from slmstack.skills._frozen import FrozenEncoder

torch.set_num_threads(2)
fit, val, types, yf, yv = split()
print(len(fit), len(val), flush=True)
xf_t, xv_t = tfidf(fit, val)

dense = {}
for ml in (128, 256):
    cache = Path(f"/tmp/cuad_dense_{ml}.npz")
    if cache.exists():
        z = np.load(cache)
        dense[ml] = (z["f"], z["v"])
        continue
    t0 = time.time()
    enc = FrozenEncoder("minilm", max_length=ml, batch_size=32)
    enc.cache([e.text for e in fit + val])
    df = np.stack([enc.vector(e.text) for e in fit])
    dv = np.stack([enc.vector(e.text) for e in val])
    np.savez(cache, f=df, v=dv)
    dense[ml] = (df, dv)
    print(f"encoded at {ml} in {time.time() - t0:.0f}s", flush=True)


def report(name, p, thr):
    mi, ma = micro_macro(p, thr, yv)
    print(f"{name:50s} micro {mi:5.1f} macro {ma:5.1f}", flush=True)


def scored(c, xf, xv):
    p_ho, p_val = probs(c, xf, xv, yf)
    return p_val, p_ho, thresholds(p_ho, yf)


p_t, pho_t, thr_t = scored(4.0, xf_t, xv_t)
report("tfidf C4", p_t, thr_t)
for c in (8.0, 16.0):
    p, _, thr = scored(c, xf_t, xv_t)
    report(f"tfidf C{c:g}", p, thr)
for ml, (df, dv) in dense.items():
    for w in (1.0, 0.5, 2.0):
        xf = sparse.hstack([xf_t, sparse.csr_matrix(w * df)]).tocsr()
        xv = sparse.hstack([xv_t, sparse.csr_matrix(w * dv)]).tocsr()
        p, _, thr = scored(4.0, xf, xv)
        report(f"concat ml{ml} w{w}", p, thr)
    for c in (4.0, 32.0):
        p_d, pho_d, thr_d = scored(c, sparse.csr_matrix(df), sparse.csr_matrix(dv))
        report(f"dense-only ml{ml} C{c:g}", p_d, thr_d)
        for a in (0.3, 0.5, 0.7):
            # late fusion: thresholds re-tuned on the fused held-out probabilities
            thr = thresholds(a * pho_t + (1 - a) * pho_d, yf)
            report(f"late ml{ml} Cd{c:g} a{a}", a * p_t + (1 - a) * p_d, thr)
