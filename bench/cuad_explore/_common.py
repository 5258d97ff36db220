"""What the CUAD exploration scripts share: the validation split, TF-IDF, the skill's
threshold protocol and the scores.

Split: the first 150 contracts by name; index % 5 == 0 are the benchmark's test
contracts and are never read here; index % 5 == 1 validate; the rest fit. Thresholds
follow ``ClauseFinder.fit`` as it was when the study ran: tuned on a random 20% of the
fit clauses, then the regressions refitted on all of them.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import machine
from cuad import load
from slmstack.data.clauses import ClauseExample, label_clauses
from slmstack.skills.clauses import ClauseFinder

DATA = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "cuad"
GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


def split():
    """(fit clauses, validation clauses, types, y of fit, y of validation)."""
    contracts, _ = load(DATA, 150)
    fit: list[ClauseExample] = []
    val: list[ClauseExample] = []
    for i, (name, text, ann) in enumerate(contracts):
        if i % 5 == 0:
            continue
        clauses, _ = label_clauses(text, ann, source=name)
        (val if i % 5 == 1 else fit).extend(clauses)
    types = sorted({lab for ex in fit for lab in ex.labels})
    yf = np.array([[t in ex.labels for t in types] for ex in fit], dtype=np.int64)
    yv = np.array([[t in ex.labels for t in types] for ex in val], dtype=np.int64)
    return fit, val, types, yf, yv


def tfidf(fit, val):
    """The skill's TF-IDF features of the fit and validation clauses."""
    cf = ClauseFinder(base=None)
    cf.tfidf_ = cf._vectorizer().fit([e.text for e in fit])
    return cf.tfidf_.transform([e.text for e in fit]).tocsr(), cf.tfidf_.transform(
        [e.text for e in val]
    ).tocsr()


def held_out(n: int, seed: int = 0):
    """(rows to fit on, rows to tune thresholds on): a random 20% of ``n`` fit clauses."""
    order = np.random.default_rng(seed).permutation(n)
    k = int(0.2 * n)
    return np.sort(order[k:]), np.sort(order[:k])


def probs(c, xf, xv, yf):
    """(held-out probabilities from the 80% fit, validation probabilities from all of fit)."""
    tr, ho = held_out(xf.shape[0])
    f = ClauseFinder(base=None, c=c)
    coef, bias = f._fit_lr(xf[tr], yf[tr])
    p_ho = f._proba(xf[ho], coef, bias)
    coef, bias = f._fit_lr(xf, yf)
    return p_ho, f._proba(xv, coef, bias)


def thresholds(p_ho, yf):
    """Each type's threshold, chosen on the held-out rows as ``ClauseFinder`` does."""
    _, ho = held_out(len(yf))
    return np.array(
        [ClauseFinder._best_threshold(p_ho[:, j], yf[ho, j]) for j in range(yf.shape[1])]
    )


def micro_macro(p, thr, y):
    """Clause micro F1 and macro F1 over the types present in ``y``, in percent."""
    pred = p >= thr
    tp = (pred & (y == 1)).sum(0)
    fp = (pred & (y == 0)).sum(0)
    fn = (~pred & (y == 1)).sum(0)
    has = y.sum(0) > 0
    f1 = 2 * tp / np.maximum(1, 2 * tp + fp + fn)
    micro = 100 * 2 * tp.sum() / max(1, 2 * tp.sum() + fp.sum() + fn.sum())
    return round(float(micro), 1), round(float(100 * f1[has].mean()), 1)


def scored(finder, val, types, yv, seconds):
    """A fitted finder's row: validation micro/macro F1, its own held-out (or out-of-fold)
    micro F1, the types that use the encoder, and the fitting time."""
    p = finder.predict_clauses([e.text for e in val], positions=[e.position for e in val])
    cols = [finder.types_.index(t) for t in types]
    micro, macro = micro_macro(p[:, cols], finder.thresholds_[cols], yv)
    return {
        "validation_micro_f1": round(float(micro), 2),
        "validation_macro_f1": round(float(macro), 2),
        "held_out_micro_f1": round(100 * finder.metrics_["val_micro_f1"], 2),
        "types_using_encoder": [
            t for t, u in zip(finder.types_, finder.uses_encoder_, strict=True) if u
        ],
        "train_s": round(seconds, 1),
    }


def share_encoders():
    """Make every ``ClauseFinder`` of one base share one encoder, so its vector cache
    encodes each clause once for all the fits of a study."""
    make = ClauseFinder._encoder
    shared = {}

    def shared_encoder(self, expect_sha256=None):
        if self.base not in shared:
            shared[self.base] = make(self, expect_sha256)
        return shared[self.base]

    ClauseFinder._encoder = shared_encoder


SPLIT = "validation: 30 train contracts with index % 5 == 1 (test contracts not read)"


def write(name, rows, *, args="", **extra):
    """Write ``bench/results/{name}.json``: the rows, the split, the machine, the command."""
    out = Path(__file__).resolve().parents[1] / "results" / f"{name}.json"
    script = Path(sys.argv[0]).name
    command = f"flock /tmp/slmstack-cpu.lock .venv/bin/python bench/cuad_explore/{script}"
    result = {"split": SPLIT, **extra, "rows": rows, "machine": machine(),
              "command": f"{command} {args}".strip()}  # fmt: skip
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
