"""RouteLLM benchmark: the routers (logistic-regression sweeps, the slmstack TextClassifier,
the random router and the oracle)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from _routellm_data import C_GRID, MAX_LENGTH, SCHEMES, Array, Index, Json, Split, Task
from _routellm_metrics import curve_all, evaluate, summarize


def apgr_on_val(scores: Array, task: Task, idx: Index) -> float:
    w, s = task.weak[idx], task.strong[idx]
    return float(summarize(*curve_all(scores, w, s), w.mean(), s.mean(), interp=False)["apgr"])


def _fit_lr(x_train: Any, y: list[str], c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000, random_state=0).fit(x_train, y)


def p_strong(model: Any, x: Any) -> Array:
    return np.asarray(model.predict_proba(x)[:, list(model.classes_).index("strong")], float)


def sweep_lr(task: Task, split: Split, x_all: Any, name: str) -> tuple[Json, dict[str, Array]]:
    """Choose (labelling, C) on validation; return the choice and the test/val scores."""
    grid: list[Json] = []
    best: tuple[float, str, float, Any] = (-np.inf, "", 0.0, None)
    tr, va = split["train"], split["val"]
    for scheme in SCHEMES:
        for c in C_GRID:
            model = _fit_lr(x_all[tr], task.labels(scheme, tr), c)
            apgr = apgr_on_val(p_strong(model, x_all[va]), task, va)
            grid.append({"scheme": scheme, "C": c, "val_apgr": apgr})
            if apgr > best[0]:  # ties keep the earlier (smaller) C
                best = (apgr, scheme, c, model)
    val_apgr, scheme, c, model = best
    print(f"  {name}: chose {scheme}, C={c} (val APGR {val_apgr:.3f})", flush=True)
    scores = {k: p_strong(model, x_all[split[k]]) for k in ("val", "test")}
    return {"scheme": scheme, "C": c, "grid": grid, "model": model}, scores


def fit_text_classifier(
    task: Task, split: Split, scheme: str, c: float, texts_extra: Sequence[str] = ()
) -> Json:
    """The router skill: TextClassifier head on MiniLM, P("strong") as the score."""
    from slmstack.skills.classifier import TextClassifier
    from slmstack.types import Example

    tr = split["train"]
    examples = [
        Example(task.texts[i], lab) for i, lab in zip(tr, task.labels(scheme, tr), strict=True)
    ]
    start, cpu = time.perf_counter(), time.process_time()
    skill = TextClassifier(
        base="minilm", strategy="head", head_c=c, max_length=MAX_LENGTH, scope_alpha=0.0, seed=0
    ).fit(examples)
    fit_s, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
    col = skill.classes_.index("strong")
    out: dict[str, Any] = {"fit_s": fit_s, "fit_cpu_s": fit_cpu, "val_metrics": skill.metrics_}
    start = time.perf_counter()
    for k in ("val", "test"):
        out[k] = skill.predict_proba([task.texts[i] for i in split[k]])[:, col]
    n = len(split["val"]) + len(split["test"])
    out["predict_texts_per_s"] = n / (time.perf_counter() - start)
    if texts_extra:
        out["extra"] = skill.predict_proba(list(texts_extra))[:, col]
    times = []
    for t in [task.texts[i] for i in split["test"][:60]]:
        t0 = time.perf_counter()
        skill.predict_proba([t])
        times.append(1000 * (time.perf_counter() - t0))
    out["p50_ms_one_query"] = float(np.percentile(times[10:], 50))
    return out


def random_router(weak: Array, strong: Array, seeds: int) -> Json:
    """Expected curve (exactly linear) and the spread of seeded draws."""
    draws: dict[str, list[Json]] = {"deciles": [], "all": []}
    for seed in range(seeds):
        r = np.random.default_rng(1000 + seed).random(len(weak))
        res = evaluate(r, weak, strong)
        for k in draws:
            draws[k].append(res[k])
    exact = {"apgr": 0.5, "cpt50": 0.5, "cpt80": 0.8}
    spread = {
        k: {m: [float(np.mean([d[m] for d in v])), float(np.std([d[m] for d in v]))] for m in exact}
        for k, v in draws.items()
    }
    return {"expected": {"deciles": exact, "all": exact}, "seeds": seeds, "draws": spread}


def oracle_scores(weak: Array, strong: Array, seed: int) -> Array:
    """Largest strong-minus-weak quality first; ties in a seeded random order.

    With 0/1 correctness that is: strong-only wins, then ties, strong-only losses last.
    The random tie-break (< 0.1) is smaller than any gap between distinct differences
    (1 for correctness, 0.5 for MT-Bench's mean of two integer judge scores).
    """
    return strong - weak + 0.1 * np.random.default_rng(seed).random(len(weak))
