"""Saving and loading the checker's fitted models as a config and plain arrays.

The TF-IDF vocabulary, hypothesis lists and the evidence memory's texts go in the
JSON config; every weight and vector goes in one safetensors group (``checker``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.compliance._nli import Head, Linear, Memory, Models, SpanModels


def models_state(
    models: Models, memory: Mapping[str, Memory], tfidf: Any, dim: int
) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """The config entries and arrays of fitted models (``dim``: the encoder's width)."""
    m = models
    keys = sorted(memory)
    texts = {h: {"entailed": memory[h].entailed_text,
                 "contradicted": memory[h].contradicted_text} for h in keys}  # fmt: skip
    vectors = [v for h in keys for v in (memory[h].entailed, memory[h].contradicted)]
    own = sorted(m.spans.own)
    width = m.spans.own[own[0]].coef.shape[1] if own else 1
    config = {
        "head_hypotheses": list(m.head.hypotheses),
        "contradiction_bias": m.head.contradiction_bias,
        "memory": texts,
        "own_evidence": own,
        "vocabulary": {k: int(v) for k, v in tfidf.vocabulary_.items()},
    }
    arrays = {
        "evidence_coef": m.spans.evidence.coef, "evidence_bias": m.spans.evidence.bias,
        "nli_coef": m.spans.nli.coef, "nli_bias": m.spans.nli.bias,
        "head_coef": m.head.linear.coef, "head_bias": m.head.linear.bias,
        "own_coef": np.vstack([np.zeros((0, width), np.float32),
                               *(m.spans.own[h].coef for h in own)]),
        "own_bias": np.concatenate([np.zeros(0, np.float32),
                                    *(m.spans.own[h].bias for h in own)]),
        "idf": tfidf.idf_.astype(np.float64),
        "exemplars": np.vstack([np.zeros((0, dim), np.float32), *vectors]).astype(np.float32),
    }  # fmt: skip
    return config, arrays


def restore_models(
    config: Mapping[str, Any], t: Mapping[str, NDArray[Any]]
) -> tuple[Models, dict[str, Memory], Any]:
    """Inverse of :func:`models_state`: the models, the evidence memory, the TF-IDF."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer

    own = {
        h: Linear(t["own_coef"][i : i + 1], t["own_bias"][i : i + 1])
        for i, h in enumerate(config["own_evidence"])
    }
    spans = SpanModels(Linear(t["evidence_coef"], t["evidence_bias"]),
                       Linear(t["nli_coef"], t["nli_bias"]), own)  # fmt: skip
    # Checkers saved before the per-hypothesis head have neither key: their head reads
    # the shared features only, with no bias, which these defaults reproduce exactly.
    head = Head(Linear(t["head_coef"], t["head_bias"]),
                tuple(config.get("head_hypotheses", ())),
                float(config.get("contradiction_bias", 0.0)))  # fmt: skip
    tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32,
                            vocabulary=dict(config["vocabulary"]))  # fmt: skip
    tfidf.idf_ = t["idf"]
    memory = {}
    row = 0
    width = len(tfidf.vocabulary)

    def vectors(texts: list[str]) -> Any:  # scikit-learn refuses an empty list
        return tfidf.transform(texts) if texts else sparse.csr_matrix((0, width), dtype=np.float32)

    for h, texts in config["memory"].items():
        ent, con = list(texts["entailed"]), list(texts["contradicted"])
        ev = t["exemplars"][row : row + len(ent)]
        cv = t["exemplars"][row + len(ent) : row + len(ent) + len(con)]
        row += len(ent) + len(con)
        memory[h] = Memory(ev, cv, vectors(ent), vectors(con), ent, con)
    return Models(spans, head), memory, tfidf
