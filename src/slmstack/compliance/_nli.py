"""The three light models behind :class:`~slmstack.compliance.ComplianceChecker`.

Each document is cut into windows (sentences and list items, none longer than the
encoder's window) and each window is encoded once by the frozen encoder. For a
hypothesis ``h`` (vector ``v_h``):

1. **evidence**: P(window is evidence for h), a logistic regression on ``v*v_h``,
   ``cos(v, v_h)``, the TF-IDF cosine with h, and the largest (and top-3 mean) cosine
   with h's evidence windows in training (its exemplars; for a hypothesis never seen,
   the hypothesis itself). The weights are shared by all hypotheses, so the model
   applies to a new pack's hypotheses, where it falls back on similarity to the text;
2. **span NLI**: P(contradiction | window is evidence), a logistic regression on the
   window's TF-IDF 1-2 grams (negations and exceptions: "shall not", "except"),
   ``[v, v*v_h]`` and the nearest entailing and contradicting exemplars of h, trained on
   the gold evidence of entailed and contradicted pairs;
3. **document head**: entailed / contradicted / not mentioned from the evidence scores
   of the top windows, the contradiction score weighted by them, and ``v_h`` (which
   lets it learn how often each kind of clause appears), as a 3-class logistic regression
   with balanced class weights; each training hypothesis also gets its own copy of those
   scores (its own weights and prior), and a bias on the contradiction logit, chosen by
   cross-validation on the training documents, is the decision rule (see :class:`Head`).

Exemplar features are computed out of fold (a window never meets its own document's
evidence), and the head is trained on out-of-fold scores (models 1 and 2 fitted on the
other folds), so both learn how the features behave on documents never seen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.compliance.rules import Verdict

VERDICTS: tuple[Verdict, ...] = ("entailed", "contradicted", "not_mentioned")
TOP_K = 3  # windows whose scores the document head reads
Array = NDArray[np.float32]


@dataclass
class Unit:
    """One document ready for the models: windows, their vectors and TF-IDF rows."""

    windows: list[tuple[int, int, int]]  # (start, end, segment index)
    vectors: Array  # n_windows x dim, L2-normalised
    tfidf: Any  # scipy sparse n_windows x vocabulary, L2-normalised rows
    texts: list[str]  # the windows' text


@dataclass
class Memory:
    """A hypothesis's evidence windows in training: vectors and TF-IDF rows, by verdict."""

    entailed: Array  # n x dim
    contradicted: Array  # m x dim
    entailed_tfidf: Any  # scipy sparse n x vocabulary
    contradicted_tfidf: Any  # scipy sparse m x vocabulary
    entailed_text: list[str]
    contradicted_text: list[str]


@dataclass
class Hypothesis:
    """A hypothesis as the models see it: its text's vectors and its training evidence."""

    vector: Array  # dim
    tfidf: Any  # scipy sparse 1 x vocabulary
    memory: Memory | None = None  # None for a hypothesis never seen in training
    text: str = ""

    @property
    def exemplars(self) -> tuple[Array, Any]:
        """Vectors and TF-IDF rows to compare windows with (the text itself when unseen)."""
        from scipy import sparse

        m = self.memory
        if m is None or len(m.entailed) + len(m.contradicted) == 0:
            return self.vector[None, :], self.tfidf
        return (np.vstack([m.entailed, m.contradicted]),
                sparse.vstack([m.entailed_tfidf, m.contradicted_tfidf]))  # fmt: skip


@dataclass
class Linear:
    """A fitted logistic regression as plain arrays (binary: one row)."""

    coef: Array  # classes x features (1 x features when binary)
    bias: Array  # classes

    def scores(self, x: Any) -> NDArray[np.float64]:
        """Probabilities: sigmoid for one row, softmax for several."""
        z = np.asarray(x @ self.coef.T.astype(np.float64)) + self.bias
        if self.coef.shape[0] == 1:
            out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return out
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        probs: NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
        return probs


def fit_linear(x: Any, y: NDArray[np.int64], *, c: float, balanced: bool, seed: int) -> Linear:
    """A logistic regression (L2, lbfgs), stored as arrays."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(
        C=c, class_weight="balanced" if balanced else None, max_iter=2000, random_state=seed
    )
    lr.fit(x, y)
    # C order: lbfgs may hand back Fortran-ordered weights, which safetensors would save
    # as raw bytes in that order and read back transposed.
    coef = np.ascontiguousarray(lr.coef_, dtype=np.float32)
    bias = np.ascontiguousarray(lr.intercept_, dtype=np.float32)
    if len(lr.classes_) > 2 and list(lr.classes_) != list(range(len(lr.classes_))):
        raise ValueError(f"classes must be 0..n-1, got {lr.classes_}")
    return Linear(coef, bias)


def _max_sim(a: Any, b: Any, dense: bool) -> NDArray[np.float32]:
    """Per row of ``a``, the largest similarity with any row of ``b`` (-1 when ``b`` is empty)."""
    if b.shape[0] == 0 or a.shape[0] == 0:
        return np.full(a.shape[0], -1.0, dtype=np.float32)
    sims = a @ b.T if dense else (a @ b.T).todense()
    out: NDArray[np.float32] = np.asarray(sims, dtype=np.float32).max(axis=1)
    return out


def evidence_features(unit: Unit, hyp: Hypothesis) -> Array:
    """Features of every window of ``unit`` against ``hyp`` (see the module docstring)."""
    v = unit.vectors
    ex_v, ex_t = hyp.exemplars
    lexical = np.asarray((unit.tfidf @ hyp.tfidf.T).todense(), dtype=np.float32)[:, 0]
    sims = v @ ex_v.T
    top3 = np.sort(sims, axis=1)[:, -3:].mean(axis=1)
    facts = np.stack([v @ hyp.vector, sims.max(axis=1), top3, lexical,
                      _max_sim(unit.tfidf, ex_t, dense=False)], axis=1)  # fmt: skip
    return np.hstack([v * hyp.vector, facts]).astype(np.float32)


def nli_features(unit: Unit, rows: Sequence[int] | NDArray[np.int64], hyp: Hypothesis) -> Any:
    """Features for the contradiction model of the given windows."""
    from scipy import sparse

    idx = np.asarray(rows, dtype=np.int64)
    v = unit.vectors[idx]
    t = unit.tfidf[idx]
    m = hyp.memory
    if m is None:
        near = np.full((len(idx), 4), -1.0, dtype=np.float32)
    else:
        near = np.stack([_max_sim(v, m.entailed, True), _max_sim(v, m.contradicted, True),
                         _max_sim(t, m.entailed_tfidf, False),
                         _max_sim(t, m.contradicted_tfidf, False)], axis=1)  # fmt: skip
    dense = np.hstack([v, v * hyp.vector, near, near[:, 1:2] - near[:, 0:1],
                       near[:, 3:4] - near[:, 2:3]]).astype(np.float32)  # fmt: skip
    return sparse.hstack([t, sparse.csr_matrix(dense)]).tocsr()


def head_features(
    p_ev: NDArray[np.float64],
    p_c: NDArray[np.float64],
    hyp: Hypothesis,
    hypotheses: Sequence[str] = (),
) -> Array:
    """Document-level features of one (document, hypothesis) pair.

    Shared facts (top evidence scores, evidence-weighted P(contradiction), ...) and the
    hypothesis vector; with ``hypotheses`` (the head's known ones), also a one-hot of the
    hypothesis and the facts times that one-hot, so each known hypothesis gets its own
    prior and its own weights on the facts. One shared weight on P(contradiction) cannot
    serve every hypothesis: the span-NLI score separates contradicted from entailed
    evidence well for some (AUC 0.9 on ContractNLI dev) but sits at different levels for
    each. A hypothesis not in ``hypotheses`` gets zeros there: the shared weights decide.
    """
    order = np.argsort(-p_ev, kind="stable")[:TOP_K]
    top = np.zeros(TOP_K)
    top[: len(order)] = p_ev[order]
    w = p_ev[order]
    weighted_c = float((w * p_c[order]).sum() / w.sum()) if w.sum() > 0 else 0.5
    first_c = float(p_c[order[0]]) if len(order) else 0.5
    strong = float(np.log1p((p_ev >= 0.5).sum()))
    facts = np.array([*top, weighted_c, first_c, weighted_c * top[0], strong], dtype=np.float32)
    if not hypotheses:
        return np.concatenate([facts, hyp.vector]).astype(np.float32)
    one_hot = np.zeros(len(hypotheses), dtype=np.float32)
    if hyp.text in hypotheses:
        one_hot[list(hypotheses).index(hyp.text)] = 1.0
    per_hypothesis = np.outer(one_hot, facts).ravel()
    return np.concatenate([facts, hyp.vector, one_hot, per_hypothesis]).astype(np.float32)


def own_features(unit: Unit) -> Any:
    """Features of a hypothesis's own evidence model: the window's TF-IDF and vector."""
    from scipy import sparse

    return sparse.hstack([unit.tfidf, sparse.csr_matrix(unit.vectors)]).tocsr()


@dataclass
class SpanModels:
    """Evidence and contradiction models; ``own``: evidence models of known hypotheses."""

    evidence: Linear
    nli: Linear
    own: dict[str, Linear]

    def scores(
        self, unit: Unit, hyp: Hypothesis
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Each window's evidence score and P(contradiction | evidence).

        A hypothesis seen often enough in training has its own evidence model (TF-IDF
        and vector of the window, as the paper's span TF-IDF + SVM baseline); the shared
        similarity model scores the others.
        """
        if not unit.windows:
            return np.zeros(0), np.zeros(0)
        own = self.own.get(hyp.text)
        if own is not None:
            p_ev = own.scores(own_features(unit))
        else:
            p_ev = self.evidence.scores(evidence_features(unit, hyp))
        p_c = self.nli.scores(nli_features(unit, np.arange(len(unit.windows)), hyp))
        return p_ev, p_c


@dataclass
class Head:
    """The document head: verdict probabilities from :func:`head_features`.

    ``hypotheses`` are the training hypotheses that have their own block of features;
    ``contradiction_bias`` is a decision rule added to the contradiction logit (a prior
    correction chosen on held-out training documents, see
    :func:`~slmstack.compliance._training.choose_bias`).
    """

    linear: Linear
    hypotheses: tuple[str, ...] = ()
    contradiction_bias: float = 0.0

    def probs(
        self, p_ev: NDArray[np.float64], p_c: NDArray[np.float64], hyp: Hypothesis
    ) -> NDArray[np.float64]:
        """Verdict probabilities in ``VERDICTS`` order, after the contradiction bias."""
        raw = self.linear.scores(head_features(p_ev, p_c, hyp, self.hypotheses)[None, :])
        out: NDArray[np.float64] = shift(raw, self.contradiction_bias)[0]
        return out


def shift(probs: NDArray[np.float64], bias: float) -> NDArray[np.float64]:
    """Add ``bias`` to the contradiction log-probability of each row and renormalise."""
    z = np.log(np.clip(probs, 1e-12, 1.0))
    z[:, VERDICTS.index("contradicted")] += bias
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return out


@dataclass
class Models:
    """The fitted span models and the document head."""

    spans: SpanModels
    head: Head

    def judge(
        self, unit: Unit, hyp: Hypothesis
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """(verdict probabilities in ``VERDICTS`` order, evidence score, P(contradiction))."""
        p_ev, p_c = self.spans.scores(unit, hyp)
        return self.head.probs(p_ev, p_c, hyp), p_ev, p_c


@dataclass
class Pair:
    """A training pair: a document, a hypothesis key, its verdict and evidence segments."""

    unit: int
    hypothesis: str
    verdict: int  # index into VERDICTS
    evidence: frozenset[int]


def memories(units: Sequence[Unit], pairs: Sequence[Pair]) -> dict[str, Memory]:
    """The evidence windows of each hypothesis in ``pairs``, split by verdict."""
    from scipy import sparse

    rows: dict[str, tuple[list[tuple[int, int]], list[tuple[int, int]]]] = {}
    for p in pairs:
        ent, con = rows.setdefault(p.hypothesis, ([], []))
        if p.verdict == 2:
            continue
        for j, (_, _, k) in enumerate(units[p.unit].windows):
            if k in p.evidence:
                (ent if p.verdict == 0 else con).append((p.unit, j))
    out = {}
    dim = units[0].vectors.shape[1] if units else 0
    width = units[0].tfidf.shape[1] if units else 0

    def stack(found: list[tuple[int, int]]) -> tuple[Array, Any, list[str]]:
        if not found:
            empty = sparse.csr_matrix((0, width), dtype=np.float32)
            return np.zeros((0, dim), np.float32), empty, []
        vec = np.stack([units[u].vectors[j] for u, j in found]).astype(np.float32)
        tfidf = sparse.vstack([units[u].tfidf[j] for u, j in found]).tocsr()
        return vec, tfidf, [units[u].texts[j] for u, j in found]

    for h, (ent, con) in rows.items():
        (ev, et, es), (cv, ct, cs) = stack(ent), stack(con)
        out[h] = Memory(ev, cv, et, ct, es, cs)
    return out


def fit_span_models(
    units: Sequence[Unit],
    pairs: Sequence[Pair],
    hyps: Callable[[Pair], Hypothesis],
    *,
    c: float,
    negatives: int,
    min_own: int,
    seed: int,
) -> SpanModels:
    """Fit the evidence and the contradiction models on ``pairs``.

    Every evidence window is a positive; the negatives of a pair are its ``negatives``
    windows most similar to the hypothesis (the hard ones) plus as many at random.
    A hypothesis with at least ``min_own`` evidence windows also gets its own evidence
    model, trained on every window of its documents.
    """
    from scipy import sparse

    rng = np.random.default_rng(seed)
    ev_x, ev_y, nli_x, nli_y = [], [], [], []
    own_rows: dict[str, tuple[list[Any], list[NDArray[np.int64]]]] = {}
    own_x: dict[int, Any] = {}
    for p in pairs:
        unit, hyp = units[p.unit], hyps(p)
        if not unit.windows:
            continue
        feats = evidence_features(unit, hyp)
        gold = np.array([k in p.evidence for _, _, k in unit.windows])
        if p.unit not in own_x:
            own_x[p.unit] = own_features(unit)
        xs, ys = own_rows.setdefault(p.hypothesis, ([], []))
        xs.append(own_x[p.unit])
        ys.append(gold.astype(np.int64))
        neg = np.flatnonzero(~gold)
        hard = neg[np.argsort(-feats[neg, -4], kind="stable")[:negatives]]
        rest = np.setdiff1d(neg, hard)
        easy = rng.choice(rest, size=min(negatives, len(rest)), replace=False)
        rows = np.concatenate([np.flatnonzero(gold), hard, easy])
        ev_x.append(feats[rows])
        ev_y.append(gold[rows].astype(np.int64))
        if p.verdict != 2 and gold.any():
            nli_x.append(nli_features(unit, np.flatnonzero(gold), hyp))
            nli_y.append(np.full(int(gold.sum()), int(p.verdict == 1), dtype=np.int64))
    evidence = fit_linear(np.vstack(ev_x), np.concatenate(ev_y), c=c, balanced=False, seed=seed)
    y_nli = np.concatenate(nli_y) if nli_y else np.zeros(0, dtype=np.int64)
    if len(set(y_nli.tolist())) < 2:
        # No contradiction (or no entailment) to learn from: a constant model, honestly so.
        rate = float(y_nli.mean()) if len(y_nli) else 0.0
        width = nli_features(units[0], [0], hyps(pairs[0])).shape[1]
        logit = np.log(max(rate, 1e-3) / max(1 - rate, 1e-3))
        nli = Linear(np.zeros((1, width), np.float32), np.array([logit], np.float32))
    else:
        nli = fit_linear(sparse.vstack(nli_x).tocsr(), y_nli, c=c, balanced=True, seed=seed)
    own = {}
    for h, (xs, ys) in sorted(own_rows.items()):
        y = np.concatenate(ys)
        if min_own <= y.sum() < len(y):
            own[h] = fit_linear(sparse.vstack(xs).tocsr(), y, c=c, balanced=False, seed=seed)
    return SpanModels(evidence, nli, own)
