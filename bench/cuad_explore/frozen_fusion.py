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

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch

from cuad import load
from slmstack.data.clauses import label_clauses
from slmstack.skills._frozen import FrozenEncoder
from slmstack.skills.clauses import ClauseFinder

torch.set_num_threads(2)
contracts, cats = load(Path(__file__).resolve().parents[3] / "shared" / "datasets" / "cuad", 150)
fit, val = [], []
for i, (name, text, ann) in enumerate(contracts):
    if i % 5 == 0:
        continue
    clauses, _ = label_clauses(text, ann, source=name)
    (val if i % 5 == 1 else fit).extend(clauses)
print(len(fit), len(val), flush=True)
types = sorted({lab for ex in fit for lab in ex.labels})
yf = np.array([[t in ex.labels for t in types] for ex in fit], dtype=np.int64)
yv = np.array([[t in ex.labels for t in types] for ex in val], dtype=np.int64)

cf = ClauseFinder(base=None)
cf.tfidf_ = cf._vectorizer().fit([e.text for e in fit])
xf_t = cf.tfidf_.transform([e.text for e in fit]).tocsr()
xv_t = cf.tfidf_.transform([e.text for e in val]).tocsr()

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


def thresholds_and_f1(finder_c, xf, xv, inner_seed=0):
    """Skill protocol inside `fit`: thresholds on a random 20% of fit, refit on all fit."""
    order = np.random.default_rng(inner_seed).permutation(xf.shape[0])
    n = int(0.2 * xf.shape[0])
    tr, ho = np.sort(order[n:]), np.sort(order[:n])
    f = ClauseFinder(base=None, c=finder_c)
    coef, bias = f._fit_lr(xf[tr], yf[tr])
    p_ho = f._proba(xf[ho], coef, bias)
    thr = np.array([f._best_threshold(p_ho[:, j], yf[ho, j]) for j in range(len(types))])
    coef, bias = f._fit_lr(xf, yf)
    return f._proba(xv, coef, bias), p_ho, thr, ho


def micro_macro(p, thr, y):
    pred = p >= thr
    tp = (pred & (y == 1)).sum(0)
    fp = (pred & (y == 0)).sum(0)
    fn = (~pred & (y == 1)).sum(0)
    micro = 2 * tp.sum() / max(1, 2 * tp.sum() + fp.sum() + fn.sum())
    has = y.sum(0) > 0
    f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(1, 2 * tp + fp + fn), 0.0)
    return 100 * micro, 100 * f1[has].mean()


from scipy import sparse  # noqa: E402

results = []


def report(name, p, thr):
    mi, ma = micro_macro(p, thr, yv)
    results.append((name, mi, ma))
    print(f"{name:50s} micro {mi:5.1f} macro {ma:5.1f}", flush=True)


p_t, pho_t, thr_t, ho = thresholds_and_f1(4.0, xf_t, xv_t)
report("tfidf C4", p_t, thr_t)
for c in (8.0, 16.0):
    p, _, thr, _ = thresholds_and_f1(c, xf_t, xv_t)
    report(f"tfidf C{c:g}", p, thr)
for ml, (df, dv) in dense.items():
    for w in (1.0, 0.5, 2.0):
        xf = sparse.hstack([xf_t, sparse.csr_matrix(w * df)]).tocsr()
        xv = sparse.hstack([xv_t, sparse.csr_matrix(w * dv)]).tocsr()
        p, _, thr, _ = thresholds_and_f1(4.0, xf, xv)
        report(f"concat ml{ml} w{w}", p, thr)
    for c in (4.0, 32.0):
        p_d, pho_d, thr_d, _ = thresholds_and_f1(c, sparse.csr_matrix(df), sparse.csr_matrix(dv))
        report(f"dense-only ml{ml} C{c:g}", p_d, thr_d)
        for a in (0.3, 0.5, 0.7):
            # late fusion: thresholds re-tuned on the fused held-out probabilities
            pho = a * pho_t + (1 - a) * pho_d
            f = ClauseFinder(base=None)
            thr = np.array([f._best_threshold(pho[:, j], yf[ho, j]) for j in range(len(types))])
            report(f"late ml{ml} Cd{c:g} a{a}", a * p_t + (1 - a) * p_d, thr)
