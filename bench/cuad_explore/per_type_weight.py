"""CUAD exploration (validation only): a per-type weight between TF-IDF and encoder.

For each clause type, the weight of the TF-IDF probability against the encoder's (frozen,
or tuned by ``tuned_encoder.py``) and the threshold are chosen on the skill's own
held-out 20%; scored on the validation contracts. Needs the vector caches that
``frozen_fusion.py`` and ``tuned_encoder.py 1`` write to /tmp.
"""

import numpy as np
from _common import GRID, held_out, micro_macro, probs, split, tfidf
from scipy import sparse

fit, val, types, yf, yv = split()
xf_t, xv_t = tfidf(fit, val)
_, ho = held_out(len(yf))


def best(p, y):
    if y.sum() < 2:
        return 0.5, -1
    f1 = [2 * ((p >= t) & (y == 1)).sum() / max(1, (p >= t).sum() + y.sum()) for t in GRID]
    k = int(np.argmax(f1))
    return float(GRID[k]), f1[k]


tf = {c: probs(c, xf_t, xv_t, yf) for c in (4.0, 16.0)}
for c, (ph, pv) in tf.items():
    thr = np.array([best(ph[:, j], yf[ho, j])[0] for j in range(len(types))])
    print("tfidf", c, micro_macro(pv, thr, yv), flush=True)
for name, path in (("frozen", "/tmp/cuad_dense_128.npz"), ("tuned1", "/tmp/cuad_ft_1.npz")):
    z = np.load(path)
    ph_d, pv_d = probs(32.0, sparse.csr_matrix(z["f"]), sparse.csr_matrix(z["v"]), yf)
    for ct in (4.0, 16.0):
        ph_t, pv_t = tf[ct]
        weights = (1.0, 0.85, 0.7, 0.5, 0.3)
        thr, a_sel = [], []
        for j in range(len(types)):
            cands = [(best(a * ph_t[:, j] + (1 - a) * ph_d[:, j], yf[ho, j]), a) for a in weights]
            (t, _), a = max(cands, key=lambda x: (round(x[0][1], 6), x[1]))  # ties: more TF-IDF
            thr.append(t)
            a_sel.append(a)
        a_arr = np.array(a_sel)
        pv = a_arr * pv_t + (1 - a_arr) * pv_d
        print(name, "per-type a, tfidf C", ct, micro_macro(pv, np.array(thr), yv),
              "a:", np.round(a_arr, 2).tolist(), flush=True)  # fmt: skip
