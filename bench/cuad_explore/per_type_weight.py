"""CUAD exploration (validation only): a per-type weight between TF-IDF and encoder.

For each clause type, the weight of the TF-IDF probability against the encoder's (frozen,
or tuned by ``tuned_encoder.py``) and the threshold are chosen on the skill's own
held-out 20%; scored on the validation contracts. Needs the vector caches that
``frozen_fusion.py`` and ``tuned_encoder.py 1`` write to /tmp.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scipy import sparse

from cuad import load
from slmstack.data.clauses import label_clauses
from slmstack.skills.clauses import ClauseFinder

contracts, cats = load(Path(__file__).resolve().parents[3] / "shared" / "datasets" / "cuad", 150)
fit, val = [], []
for i, (name, text, ann) in enumerate(contracts):
    if i % 5 == 0:
        continue
    clauses, _ = label_clauses(text, ann, source=name)
    (val if i % 5 == 1 else fit).extend(clauses)
types = sorted({lab for ex in fit for lab in ex.labels})
yf = np.array([[t in ex.labels for t in types] for ex in fit], dtype=np.int64)
yv = np.array([[t in ex.labels for t in types] for ex in val], dtype=np.int64)
cf = ClauseFinder(base=None)
cf.tfidf_ = cf._vectorizer().fit([e.text for e in fit])
xf_t = cf.tfidf_.transform([e.text for e in fit]).tocsr()
xv_t = cf.tfidf_.transform([e.text for e in val]).tocsr()
order = np.random.default_rng(0).permutation(xf_t.shape[0])
n = int(0.2 * xf_t.shape[0])
tr, ho = np.sort(order[n:]), np.sort(order[:n])


def probs(c, xf, xv):
    f = ClauseFinder(base=None, c=c)
    coef, bias = f._fit_lr(xf[tr], yf[tr])
    p_ho = f._proba(xf[ho], coef, bias)
    coef, bias = f._fit_lr(xf, yf)
    return p_ho, f._proba(xv, coef, bias)


def mm(p, thr, y):
    pred = p >= thr
    tp = (pred & (y == 1)).sum(0)
    fp = (pred & (y == 0)).sum(0)
    fn = (~pred & (y == 1)).sum(0)
    has = y.sum(0) > 0
    f1 = 2 * tp / np.maximum(1, 2 * tp + fp + fn)
    return round(100 * 2 * tp.sum() / max(1, 2 * tp.sum() + fp.sum() + fn.sum()), 1), round(
        100 * f1[has].mean(), 1
    )


GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


def best(p, y):
    if y.sum() < 2:
        return 0.5, -1
    f1 = [2 * ((p >= t) & (y == 1)).sum() / max(1, (p >= t).sum() + y.sum()) for t in GRID]
    k = int(np.argmax(f1))
    return float(GRID[k]), f1[k]


tf = {c: probs(c, xf_t, xv_t) for c in (4.0, 16.0)}
for c, (ph, pv) in tf.items():
    thr = np.array([best(ph[:, j], yf[ho, j])[0] for j in range(len(types))])
    print("tfidf", c, mm(pv, thr, yv), flush=True)
# C chosen on held-out micro
for name, path in (("frozen", "/tmp/cuad_dense_128.npz"), ("tuned1", "/tmp/cuad_ft_1.npz")):
    z = np.load(path)
    df, dv = z["f"], z["v"]
    dn = probs(32.0, sparse.csr_matrix(df), sparse.csr_matrix(dv))
    for ct in (4.0, 16.0):
        ph_t, pv_t = tf[ct]
        ph_d, pv_d = dn
        A = (1.0, 0.85, 0.7, 0.5, 0.3)
        thr, a_sel = [], []
        for j in range(len(types)):
            cands = [(best(a * ph_t[:, j] + (1 - a) * ph_d[:, j], yf[ho, j]), a) for a in A]
            (t, f), a = max(cands, key=lambda x: (round(x[0][1], 6), x[1]))  # ties: more TF-IDF
            thr.append(t)
            a_sel.append(a)
        a_sel = np.array(a_sel)
        thr = np.array(thr)
        pv = a_sel * pv_t + (1 - a_sel) * pv_d
        print(
            name,
            "per-type a, tfidf C",
            ct,
            mm(pv, thr, yv),
            "a:",
            np.round(a_sel, 2).tolist(),
            flush=True,
        )
    # concat w1 C16 style with per-type choice between tfidf and concat
