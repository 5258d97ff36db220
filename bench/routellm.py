"""Routing between a strong and a weak LLM on RouteLLM's published per-query results.

Data: ``../shared/datasets/routellm/routellm/evals`` (lm-sys/RouteLLM @0b64fda): for each
MMLU question (57 subject files) and each GSM8K problem, whether gpt-4-1106-preview (the
strong model) and Mixtral-8x7B-Instruct-v0.1 (the weak one) answered correctly; for
MT-Bench, GPT-4 judge scores (1-10) of both models' answers. The prompts RouteLLM lists as
contaminated are dropped, as its own evaluation does; exact duplicate prompts are kept
once, so that no question sits on both sides of a split.

The router: an slmstack ``TextClassifier(strategy="head", base="minilm")`` trained to say
from the query alone whether the strong model is needed. Its routing score is the
calibrated P("strong"); a query goes to the strong model when its score >= a threshold.
Two labellings are tried: ``weak_wrong`` ("strong" when the weak model is wrong) and
``gain`` ("strong" only when the strong model is right and the weak one wrong).

Splits (seed 0): MMLU and GSM8K 50 / 10 / 40 train / validation / test, stratified by the
four (weak, strong) outcomes; and an MMLU subject-disjoint split (whole subjects to test,
then to validation, until each holds 40 % / 10 % of the questions), because questions of a
subject seen in training make a random split look better than routing new kinds of
query. Every setting (head C, labelling, TF-IDF C, the length router's direction) is
chosen on the validation part by APGR; everything reported is on the test part.

The C sweep scores each candidate with the head's own math (sklearn
``LogisticRegression(C, max_iter=2000)`` on the same unit-norm MiniLM vectors, from
``slmstack.retrieval.encoder.SentenceEncoder``, window 128), so the texts are encoded once,
not once per candidate; then one ``TextClassifier`` is fitted with the chosen setting and
that skill's scores are the ones reported. (The skill holds out 10 % of its training data
for temperature scaling, so it trains on 45 % where the sweep used 50 %.)

Metrics, as RouteLLM defines them (arXiv 2406.18665; routellm/evals/evaluate.py):
PGR(router, share) = (quality(router) - quality(weak)) / (quality(strong) - quality(weak)),
quality measured on the same test questions; APGR is the area under PGR against the
strong-call share from 0 to 1 (trapezoidal rule); CPT(x %) is the strong-call share needed
for PGR = x %. Two readings are reported:

* ``deciles``: RouteLLM's code exactly: 11 thresholds at the 0, 10, ..., 100 % quantiles
  of the router's scores (``pd.qcut(scores, 10, retbins=True)``), "score >= t" except
  "score > t" for the top one, so the share runs 100 % -> 0 %; APGR by ``np.trapz`` over
  those 11 points; CPT by ``np.interp`` of the target quality along the curve.
* ``all``: every distinct score as a threshold (ties enter together), so the curve has
  a point at every achievable share; APGR by the trapezoidal rule over all points (a
  straight line between points is the expected curve when ties are broken at random);
  CPT = the smallest achievable share whose PGR reaches the target. 95 % intervals of
  this APGR come from 1,000 bootstrap resamples of the test questions.

Baselines in the same run: the random router (expected curve exactly linear: APGR 0.5,
CPT(x) = x; plus the mean and spread of 200 seeded draws under the decile protocol), the
query length in characters, a per-subject prior (the training share of "strong" labels of
the question's subject; random split only), TF-IDF word 1-2 grams + logistic regression,
and the oracle (strong-only wins first, ties broken at random, strong-only losses last).

MT-Bench (80 questions, fewer after decontamination) is too small to train on; it is
scored as transfer: the routers trained on the MMLU random split route its first turns,
which is how the paper evaluates (routers trained on other data).

Run (heavy: wrap it in the shared CPU lock)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0 \
        flock /tmp/slmstack-cpu.lock .venv/bin/python bench/routellm.py --write-results
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "routellm"
RESULTS_MD = REPO / "bench" / "RESULTS.md"
RESULTS_JSON = REPO / "bench" / "results" / "routellm.json"
SECTION = "## RouteLLM: routing MMLU between a strong and a weak LLM (`bench/routellm.py`)"
STRONG = "gpt-4-1106-preview"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
SCHEMES = ("weak_wrong", "gain")
TARGETS = (0.5, 0.8)
MAX_LENGTH = 128  # TextClassifier's default window; 21 % of MMLU prompts are longer
# Published, arXiv 2406.18665 v4 Tables 1-3 (GPT-4 strong, Mixtral-8x7B weak), evaluated
# on the whole benchmark with routers trained on Chatbot Arena data (+ augmentation):
# (CPT(50%) in %, APGR). CPT(80%) is not in our reference list.
PUBLISHED = {
    "mmlu": [
        ("random (published)", 50.1, 0.500),
        ("best router, trained with augmented data (published)", 35.4, 0.603),
    ],
    "gsm8k": [
        ("random (published)", 50.0, 0.497),
        ("causal-LLM router, augmented (published)", 33.6, 0.622),
    ],
    "mt_bench": [
        ("random (published)", 49.0, 0.500),
        ("matrix factorisation, augmented (published)", 13.4, 0.802),
    ],
}

Array = NDArray[np.float64]
Index = NDArray[np.int64]
Split = dict[str, Index]  # "train" / "val" / "test" -> question indices
Json = dict[str, Any]


# ---------------------------------------------------------------- data


@dataclass
class Task:
    """Per-query quality of both models: correctness (0/1) or a judge score."""

    name: str
    texts: list[str]
    weak: Array
    strong: Array
    group: list[str]  # MMLU subject ("" elsewhere)
    dropped: dict[str, int]

    def outcome(self) -> NDArray[np.int64]:
        """0..3: (weak right, strong right) as two bits, for stratified splits."""
        return (2 * (self.weak > 0) + (self.strong > 0)).astype(np.int64)

    def labels(self, scheme: str, idx: NDArray[np.int64]) -> list[str]:
        """Router training labels of the queries ``idx`` under a labelling scheme."""
        w, s = self.weak[idx] > 0, self.strong[idx] > 0
        need = ~w if scheme == "weak_wrong" else (s & ~w)
        return ["strong" if n else "weak_ok" for n in need]


def _contaminated(path: Path) -> set[str]:
    with path.open(encoding="utf-8") as fh:
        return {json.loads(line)["eval_prompt"] for line in fh if line.strip()}


def _rows_task(name: str, rows: list[tuple[str, bool, bool, str]], bad: set[str]) -> Task:
    seen: set[str] = set()
    kept, n_bad, n_dup = [], 0, 0
    for row in rows:
        if row[0] in bad:
            n_bad += 1
        elif row[0] in seen:
            n_dup += 1
        else:
            seen.add(row[0])
            kept.append(row)
    return Task(
        name,
        [r[0] for r in kept],
        np.array([r[1] for r in kept], float),
        np.array([r[2] for r in kept], float),
        [r[3] for r in kept],
        {"contaminated": n_bad, "duplicate_prompts": n_dup},
    )


def _read_csv(path: Path, group: str) -> list[tuple[str, bool, bool, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [
            (r["prompt"], r[WEAK] == "True", r[STRONG] == "True", group) for r in csv.DictReader(fh)
        ]


def load_mmlu(root: Path) -> Task:
    """All 57 subjects; subject = file name without ``mmlu_``."""
    rows = []
    for path in sorted((root / "mmlu" / "responses").glob("mmlu_*.csv")):
        rows += _read_csv(path, path.stem.removeprefix("mmlu_"))
    return _rows_task("mmlu", rows, _contaminated(root / "mmlu" / "contaminated_prompts.jsonl"))


def load_gsm8k(root: Path) -> Task:
    """GSM8K test problems with both models' correctness."""
    rows = _read_csv(root / "gsm8k" / "gsm8k_responses.csv", "")
    return _rows_task("gsm8k", rows, _contaminated(root / "gsm8k" / "contaminated_prompts.jsonl"))


def load_mt_bench(root: Path) -> Task:
    """First turns; quality = the mean judge score of a model's answers to both turns."""
    bad = _contaminated(root / "mt_bench" / "contaminated_prompts.jsonl")
    with (root / "mt_bench" / "question.jsonl").open(encoding="utf-8") as fh:
        questions = [json.loads(line) for line in fh if line.strip()]
    scores: dict[tuple[int, str], list[float]] = {}
    with (root / "mt_bench" / "judgements.jsonl").open(encoding="utf-8") as fh:
        for line in filter(str.strip, fh):
            j = json.loads(line)
            scores.setdefault((j["question_id"], j["model"]), []).append(float(j["score"]))
    kept = [q for q in questions if not bad & set(q["turns"])]
    return Task(
        "mt_bench",
        [q["turns"][0] for q in kept],
        np.array([np.mean(scores[q["question_id"], WEAK]) for q in kept]),
        np.array([np.mean(scores[q["question_id"], STRONG]) for q in kept]),
        [q["category"] for q in kept],
        {"contaminated": len(questions) - len(kept)},
    )


def random_split(task: Task, seed: int) -> Split:
    """50 / 10 / 40, stratified by the four (weak, strong) outcomes."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(task.texts))
    rest, test = train_test_split(idx, test_size=0.4, random_state=seed, stratify=task.outcome())
    train, val = train_test_split(
        rest, test_size=1 / 6, random_state=seed, stratify=task.outcome()[rest]
    )
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def subject_split(task: Task, seed: int) -> tuple[Split, dict[str, list[str]]]:
    """Whole subjects, in a seeded order, to test until 40 %, then validation until 10 %."""
    groups = np.array(task.group)
    subjects = sorted(set(task.group))
    order = [subjects[i] for i in np.random.default_rng(seed).permutation(len(subjects))]
    part: dict[str, list[str]] = {"test": [], "val": [], "train": []}
    n, filled = len(groups), {"test": 0, "val": 0}
    for s in order:
        size = int((groups == s).sum())
        name = "test" if filled["test"] < 0.4 * n else "val" if filled["val"] < 0.1 * n else "train"
        part[name].append(s)
        if name != "train":
            filled[name] += size
    split = {k: np.flatnonzero(np.isin(groups, v)) for k, v in part.items()}
    return split, {k: sorted(v) for k, v in part.items()}


# ---------------------------------------------------------------- metrics


def curve_all(scores: Array, weak: Array, strong: Array) -> tuple[Array, Array]:
    """(share, quality) at every distinct threshold, share ascending from 0 to 1."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    gain = np.cumsum((strong - weak)[order])
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last index of each tie group
    n = len(s)
    share = np.r_[0.0, (ends + 1) / n]
    quality = weak.mean() + np.r_[0.0, gain[ends]] / n
    return share, quality


def curve_deciles(scores: Array, weak: Array, strong: Array) -> tuple[Array, Array]:
    """RouteLLM's 11 points: thresholds at the score deciles (``pd.qcut(..., 10)``)."""
    cuts = np.quantile(scores, np.linspace(0, 1, 11))
    points = []
    for i, t in enumerate(cuts):
        sel = scores >= t if i < len(cuts) - 1 else scores > t
        points.append((sel.mean(), np.where(sel, strong, weak).mean()))
    points.sort(key=lambda p: p[0])  # RouteLLM sorts by strong_percentage
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


def summarize(share: Array, quality: Array, qw: float, qs: float, *, interp: bool) -> Json:
    """APGR and CPT(50/80 %) of one curve (``interp``: RouteLLM's np.interp reading)."""
    pgr = (quality - qw) / (qs - qw)
    out: dict[str, Any] = {"apgr": float(np.trapezoid(pgr, share))}
    for x in TARGETS:
        if interp:
            cpt = float(np.interp(qw + x * (qs - qw), quality, share))
        else:
            reach = np.flatnonzero(pgr >= x - 1e-12)
            cpt = float(share[reach[0]]) if len(reach) else float("nan")
        out[f"cpt{round(100 * x)}"] = cpt
    return out


def evaluate(scores: Array, weak: Array, strong: Array, boots: Array | None = None) -> Json:
    """Both readings of the paper's metrics (and the decile curve's points).

    ``boots``: bootstrap APGRs (all thresholds) of this router, for a 95 % interval.
    """
    qw, qs = float(weak.mean()), float(strong.mean())
    share, quality = curve_deciles(scores, weak, strong)
    out = {
        "deciles": {
            **summarize(share, quality, qw, qs, interp=True),
            "points": [[float(a), float(b)] for a, b in zip(share, quality, strict=True)],
        },
        "all": summarize(*curve_all(scores, weak, strong), qw, qs, interp=False),
    }
    if boots is not None:
        out["all"]["apgr_ci95"] = [float(x) for x in np.percentile(boots, [2.5, 97.5])]
    return out


def _boot_apgr(scores: Array, weak: Array, strong: Array, boot: int, seed: int) -> Array:
    rng = np.random.default_rng(seed)  # same seed -> same resamples for every router
    out = []
    for _ in range(boot):
        i = rng.integers(0, len(scores), len(scores))
        qw, qs = weak[i].mean(), strong[i].mean()
        out.append(
            summarize(*curve_all(scores[i], weak[i], strong[i]), qw, qs, interp=False)["apgr"]
        )
    return np.array(out)


def cascade(
    val_scores: Array, task: Task, val_idx: Index, test_scores: Array, test_idx: Index
) -> list[Json]:
    """Thresholds tuned on validation for PGR 50 / 80 %, then applied to the test part."""
    rows = []
    for target in TARGETS:
        w, s = task.weak[val_idx], task.strong[val_idx]
        share, quality = curve_all(val_scores, w, s)
        pgr = (quality - w.mean()) / (s.mean() - w.mean())
        k = int(np.flatnonzero(pgr >= target - 1e-12)[0])
        # The threshold of point k: the lowest score admitted there (+inf at share 0).
        t = np.inf if k == 0 else float(np.sort(val_scores)[::-1][round(share[k] * len(w)) - 1])
        sel = test_scores >= t
        tw, ts = task.weak[test_idx], task.strong[test_idx]
        q = np.where(sel, ts, tw).mean()
        rows.append(
            {
                "target_pgr": target,
                "threshold": t,
                "val_share": float(share[k]),
                "test_share": float(sel.mean()),
                "test_pgr": float((q - tw.mean()) / (ts.mean() - tw.mean())),
            }
        )
    return rows


# ---------------------------------------------------------------- routers


def _val_apgr(scores: Array, task: Task, idx: Index) -> float:
    w, s = task.weak[idx], task.strong[idx]
    return float(summarize(*curve_all(scores, w, s), w.mean(), s.mean(), interp=False)["apgr"])


def _fit_lr(x_train: Any, y: list[str], c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000, random_state=0).fit(x_train, y)


def _p_strong(model: Any, x: Any) -> Array:
    return np.asarray(model.predict_proba(x)[:, list(model.classes_).index("strong")], float)


def sweep_lr(task: Task, split: Split, x_all: Any, name: str) -> tuple[Json, dict[str, Array]]:
    """Choose (labelling, C) on validation; return the choice and the test/val scores."""
    grid: list[Json] = []
    best: tuple[float, str, float, Any] = (-np.inf, "", 0.0, None)
    tr, va = split["train"], split["val"]
    for scheme in SCHEMES:
        for c in C_GRID:
            model = _fit_lr(x_all[tr], task.labels(scheme, tr), c)
            apgr = _val_apgr(_p_strong(model, x_all[va]), task, va)
            grid.append({"scheme": scheme, "C": c, "val_apgr": apgr})
            if apgr > best[0]:  # ties keep the earlier (smaller) C
                best = (apgr, scheme, c, model)
    val_apgr, scheme, c, model = best
    print(f"  {name}: chose {scheme}, C={c} (val APGR {val_apgr:.3f})", flush=True)
    scores = {k: _p_strong(model, x_all[split[k]]) for k in ("val", "test")}
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


def run_experiment(
    task: Task,
    split: Split,
    vectors: NDArray[np.float32],
    args: argparse.Namespace,
    *,
    prior: bool,
    extra: Task | None = None,
) -> Json:
    """Every router on one split: settings chosen on ``val``, metrics on ``test``."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    tr, va, te = split["train"], split["val"], split["test"]
    w, s = task.weak[te], task.strong[te]
    routers: dict[str, Json] = {}
    boots: dict[str, Array] = {}

    def add(name: str, scores: Array, settings: Json) -> None:
        boots[name] = _boot_apgr(scores, w, s, args.bootstrap, args.seed)
        routers[name] = {"settings": settings, **evaluate(scores, w, s, boots[name])}
        print(
            f"  {name:38s} APGR {routers[name]['deciles']['apgr']:.3f} (deciles) "
            f"{routers[name]['all']['apgr']:.3f} (all)",
            flush=True,
        )

    length = np.array([len(t) for t in task.texts], float)
    sign = 1.0 if _val_apgr(length[va], task, va) >= _val_apgr(-length[va], task, va) else -1.0
    add(
        "query length",
        sign * length[te],
        {"direction": "longer -> strong" if sign > 0 else "shorter -> strong"},
    )
    if prior:
        groups = np.array(task.group)
        chosen: tuple[float, str, Array] = (-np.inf, "", length)
        for scheme in SCHEMES:
            lab = np.array(task.labels(scheme, tr)) == "strong"
            rate = {g: lab[groups[tr] == g].mean() for g in set(groups[tr])}
            score = np.array([rate.get(g, lab.mean()) for g in groups], float)
            apgr = _val_apgr(score[va], task, va)
            if apgr > chosen[0]:
                chosen = (apgr, scheme, score)
        add("subject prior", chosen[2][te], {"scheme": chosen[1]})
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    tfidf.fit([task.texts[i] for i in tr])
    x_tfidf = tfidf.transform(task.texts)
    tf_choice, tf_scores = sweep_lr(task, split, x_tfidf, "TF-IDF + LR")
    add("TF-IDF + LR", tf_scores["test"], {k: tf_choice[k] for k in ("scheme", "C")})
    start = time.perf_counter()
    lr_choice, lr_scores = sweep_lr(task, split, vectors, "LR on MiniLM vectors")
    sweep_s = time.perf_counter() - start
    add(
        "LR on MiniLM vectors (sweep stand-in)",
        lr_scores["test"],
        {k: lr_choice[k] for k in ("scheme", "C")},
    )
    print(
        f"  fitting TextClassifier(head, minilm, head_c={lr_choice['C']}, "
        f"{lr_choice['scheme']}) ...",
        flush=True,
    )
    extra_texts = extra.texts if extra is not None else ()
    skill = fit_text_classifier(task, split, lr_choice["scheme"], lr_choice["C"], extra_texts)
    add(
        "slmstack TextClassifier",
        skill["test"],
        {
            "scheme": lr_choice["scheme"],
            "head_c": lr_choice["C"],
            "base": "minilm",
            "strategy": "head",
        },
    )
    add("oracle", oracle_scores(w, s, args.seed), {})
    rnd = random_router(w, s, args.random_seeds)
    rho = float(
        np.corrcoef(
            np.argsort(np.argsort(skill["test"])), np.argsort(np.argsort(lr_scores["test"]))
        )[0, 1]
    )
    diff = boots["slmstack TextClassifier"] - boots["TF-IDF + LR"]
    out = {
        "sizes": {k: len(v) for k, v in split.items()},
        "test_quality": {"weak": float(w.mean()), "strong": float(s.mean())},
        "routers": routers,
        "random": rnd,
        "choices": {"TF-IDF + LR": tf_choice["grid"], "LR on MiniLM vectors": lr_choice["grid"]},
        "cascade": {
            "slmstack TextClassifier": cascade(skill["val"], task, va, skill["test"], te),
            "TF-IDF + LR": cascade(tf_scores["val"], task, va, tf_scores["test"], te),
        },
        "textclassifier": {k: v for k, v in skill.items() if k not in ("val", "test", "extra")},
        "textclassifier_val_apgr": _val_apgr(skill["val"], task, va),
        "spearman_textclassifier_vs_sweep_stand_in": rho,
        "apgr_textclassifier_minus_tfidf_ci95": list(np.percentile(diff, [2.5, 97.5])),
        "apgr_textclassifier_above_random_share_of_resamples": float(
            (boots["slmstack TextClassifier"] > 0.5).mean()
        ),
        "sweep_s": sweep_s,
    }
    if extra is not None:
        out["transfer"] = {
            "TextClassifier": skill["extra"],
            "TF-IDF + LR": _p_strong(tf_choice["model"], tfidf.transform(extra.texts)),
            "length_sign": sign,
            "lr_model": lr_choice["model"],
        }
    return out


def run_transfer(
    mt: Task, transfer: Json, mt_vectors: NDArray[np.float32], args: argparse.Namespace
) -> Json:
    """MMLU-trained routers on MT-Bench first turns (no training on MT-Bench)."""
    w, s = mt.weak, mt.strong
    length = np.array([len(t) for t in mt.texts], float)
    scores = {
        "query length (direction from MMLU)": transfer["length_sign"] * length,
        "TF-IDF + LR (MMLU-trained)": transfer["TF-IDF + LR"],
        "LR on MiniLM vectors (MMLU-trained)": _p_strong(transfer["lr_model"], mt_vectors),
        "slmstack TextClassifier (MMLU-trained)": transfer["TextClassifier"],
        "oracle": oracle_scores(w, s, args.seed),
    }
    return {
        "sizes": {"test": len(w)},
        "test_quality": {"weak": float(w.mean()), "strong": float(s.mean())},
        "routers": {
            k: {"settings": {}, **evaluate(v, w, s, _boot_apgr(v, w, s, args.bootstrap, args.seed))}
            for k, v in scores.items()
        },
        "random": random_router(w, s, args.random_seeds),
    }


# ---------------------------------------------------------------- report


def _pct(x: float) -> str:
    return "—" if x != x else f"{100 * x:.1f}%"


def _table(exp: Json, published: list[tuple[str, float, float]]) -> str:
    head = (
        "| router | chosen on validation | APGR | CPT(50%) | CPT(80%) | APGR, all thresholds "
        "(95% CI) | CPT(50%), all | CPT(80%), all |\n|---|---|---|---|---|---|---|---|\n"
    )
    rows = [
        "| random (expected curve, exact) | — | 0.500 | 50.0% | 80.0% | 0.500 | 50.0% | 80.0% |"
    ]
    d = exp["random"]["draws"]
    rows.append(
        f"| random, {exp['random']['seeds']} seeds (mean ± sd) | — "
        f"| {d['deciles']['apgr'][0]:.3f} ± {d['deciles']['apgr'][1]:.3f} "
        f"| {_pct(d['deciles']['cpt50'][0])} ± {100 * d['deciles']['cpt50'][1]:.1f} "
        f"| {_pct(d['deciles']['cpt80'][0])} ± {100 * d['deciles']['cpt80'][1]:.1f} "
        f"| {d['all']['apgr'][0]:.3f} ± {d['all']['apgr'][1]:.3f} "
        f"| {_pct(d['all']['cpt50'][0])} ± {100 * d['all']['cpt50'][1]:.1f} "
        f"| {_pct(d['all']['cpt80'][0])} ± {100 * d['all']['cpt80'][1]:.1f} |"
    )
    for name, r in exp["routers"].items():
        st = r["settings"]
        chosen = (
            ", ".join(
                f"{k}={v}" if k in ("C", "head_c") else str(v)
                for k, v in st.items()
                if k not in ("base", "strategy")
            )
            or "—"
        )
        ci = r["all"].get("apgr_ci95", [float("nan")] * 2)
        bold = "**" if name.startswith("slmstack") else ""
        rows.append(
            f"| {bold}{name}{bold} | {chosen} | {bold}{r['deciles']['apgr']:.3f}{bold} "
            f"| {bold}{_pct(r['deciles']['cpt50'])}{bold} | {_pct(r['deciles']['cpt80'])} "
            f"| {r['all']['apgr']:.3f} ({ci[0]:.3f}–{ci[1]:.3f}) | {_pct(r['all']['cpt50'])} "
            f"| {_pct(r['all']['cpt80'])} |"
        )
    for name, cpt50, apgr in published:
        rows.append(f"| RouteLLM {name} | — | {apgr:.3f} | {cpt50:.1f}% | — | — | — | — |")
    return head + "\n".join(rows) + "\n"


def _cascade_table(exp: Json) -> str:
    out = (
        "| router | target PGR | threshold (from validation) | validation strong share "
        "| test strong share | test PGR |\n|---|---|---|---|---|---|\n"
    )
    for name, rows in exp["cascade"].items():
        for r in rows:
            out += (
                f"| {name} | {100 * r['target_pgr']:.0f}% | {r['threshold']:.4f} "
                f"| {_pct(r['val_share'])} | {_pct(r['test_share'])} "
                f"| {_pct(r['test_pgr'])} |\n"
            )
    return out


def _exp_intro(exp: Json) -> str:
    z, q = exp["sizes"], exp["test_quality"]
    sizes = " / ".join(f"{k} {z[k]}" for k in ("train", "val", "test") if k in z)
    return (
        f"Questions: {sizes}. On the test part the weak model scores {q['weak']:.3f} and "
        f"the strong one {q['strong']:.3f}."
    )


def _summary(e: Json) -> str:
    """The verdict, written from the numbers (wins and losses side by side)."""
    out = []
    for key, label in (
        ("mmlu_random", "random split"),
        ("mmlu_subjects", "subject-disjoint split"),
    ):
        x = e[key]["routers"]
        me = x["slmstack TextClassifier"]
        lo, hi = me["all"]["apgr_ci95"]
        met = lo > 0.5 and me["deciles"]["cpt50"] < 0.5
        better = [
            f"{n} ({r['deciles']['apgr']:.3f})"
            for n, r in x.items()
            if n not in ("oracle", "slmstack TextClassifier")
            and "stand-in" not in n
            and r["all"]["apgr"] > me["all"]["apgr"]
        ]
        out.append(
            f"MMLU {label}: the slmstack router's APGR is {me['deciles']['apgr']:.3f} "
            f"(all thresholds {me['all']['apgr']:.3f}, 95 % CI {lo:.3f}–{hi:.3f}) and its "
            f"CPT(50%) {_pct(me['deciles']['cpt50'])}, against 0.500 and 50 % for the random "
            f"router: {'beats random on both, target met' if met else 'target NOT met'}. "
            + (
                f"Baselines ahead of it here: {', '.join(better)}."
                if better
                else "No baseline is ahead of it here."
            )
        )
    tf = [
        e[k]["routers"]["TF-IDF + LR"]["deciles"]["apgr"] for k in ("mmlu_random", "mmlu_subjects")
    ]
    ci = [e[k]["apgr_textclassifier_minus_tfidf_ci95"] for k in ("mmlu_random", "mmlu_subjects")]
    out.append(
        f"TF-IDF + LR scores {tf[0]:.3f} on the random split and {tf[1]:.3f} on the "
        "subject-disjoint one: like the subject prior (which knows only the subject), it "
        "seems to learn mostly each subject's difficulty, which does not carry over to unseen "
        "subjects. Paired bootstrap 95 % "
        f"interval of slmstack − TF-IDF APGR: {ci[0][0]:+.3f} to {ci[0][1]:+.3f} (random), "
        f"{ci[1][0]:+.3f} to {ci[1][1]:+.3f} (subject-disjoint). The paper's best MMLU "
        "router (published APGR 0.603, CPT(50%) 35.4 %) is in the same range, under a "
        "different protocol (see the caveats)."
    )
    return "**Summary.** " + " ".join(out) + "\n"


def markdown(res: Json) -> str:
    """The RESULTS.md section (see the module docstring for definitions)."""
    e, m, t = res["experiments"], res["machine"], res["timings"]
    mr, ms = e["mmlu_random"], e["mmlu_subjects"]
    tc = mr["textclassifier"]
    parts = [
        f"{SECTION}\n",
        "Data: RouteLLM's own per-query results (`../shared/datasets/routellm`, lm-sys/RouteLLM "
        "@0b64fda): whether gpt-4-1106-preview (strong) and Mixtral-8x7B-Instruct (weak) "
        f"answered each MMLU question correctly ({res['data']['mmlu']['n']} of the 14,042 "
        "questions: RouteLLM's 5 contaminated prompts and "
        f"{res['data']['mmlu']['dropped']['duplicate_prompts']} repeated prompts dropped, so "
        "no question sits on both sides of a split), the same for "
        "GSM8K, and GPT-4 judge scores for MT-Bench. The router is an slmstack "
        '`TextClassifier(strategy="head", base="minilm")` that reads only the query and '
        'predicts "strong" (the strong model is needed) or "weak_ok"; its calibrated '
        "P(strong) is the routing score, and a query goes to the strong model when the score "
        "is at or above a threshold. Sweeping the threshold traces quality against the share "
        "of strong-model calls.\n",
        "Metrics as the paper defines them (arXiv 2406.18665, `routellm/evals/evaluate.py`): "
        "PGR = (quality(router) − quality(weak)) / (quality(strong) − quality(weak)) on the "
        "same test questions; APGR = area under PGR against the strong-call share, 0 → 100 %, "
        "trapezoidal rule; CPT(x %) = strong-call share needed for PGR x %. The columns "
        "**APGR / CPT** reproduce RouteLLM's code exactly: 11 thresholds at the deciles of the "
        "router's scores, `np.trapz` over those 11 points, CPT by `np.interp` along them. "
        "The columns **… all** use every distinct score as a threshold (tied scores enter "
        "together), the trapezoidal rule over all those points, and CPT = the smallest "
        "achievable share reaching the target; the 95 % interval is from "
        f"{res['args']['bootstrap']} bootstrap resamples of the test questions.\n",
        "Settings chosen on the validation part only, by APGR (all thresholds): for the "
        'TextClassifier the labelling (`weak_wrong`: "strong" when Mixtral is wrong; '
        '`gain`: "strong" only when GPT-4 is right and Mixtral wrong) and the head\'s C '
        f"from {list(C_GRID)}; the same grid for TF-IDF + LR; the length router's direction; "
        "the subject prior's labelling. Strategy (`head`) and encoder (MiniLM) were fixed, "
        "not swept, for CPU time: `finetune` trained 14× longer than `head` on BANKING77 "
        "(`bench/classify.py`), and MPNet, not installed here, encodes about 5× slower than "
        "MiniLM. The C sweep scores each candidate with the head's own math (sklearn "
        "`LogisticRegression(C)` on the same unit-norm MiniLM vectors from slmstack's "
        "`SentenceEncoder`, so texts are encoded once, not once per C); one TextClassifier "
        "is then fitted with the chosen setting, and its scores are the ones in bold. The "
        "stand-in's row is shown too (rank correlation with the skill's test scores: "
        f"{mr['spearman_textclassifier_vs_sweep_stand_in']:.3f}).\n",
        _summary(e),
        "### MMLU, random split (stratified 50 / 10 / 40, seed 0)\n",
        _exp_intro(mr) + "\n",
        _table(mr, PUBLISHED["mmlu"]),
        f"TextClassifier − TF-IDF APGR (all), paired bootstrap 95 % interval: "
        f"{mr['apgr_textclassifier_minus_tfidf_ci95'][0]:+.3f} to "
        f"{mr['apgr_textclassifier_minus_tfidf_ci95'][1]:+.3f}. Validation APGR of the fitted "
        f"skill: {mr['textclassifier_val_apgr']:.3f}.\n",
        "Cascade thresholds tuned on validation (the least strong-call share reaching the "
        "target PGR there), then applied unchanged to the test part:\n",
        _cascade_table(mr),
        "### MMLU, subject-disjoint split (no test subject seen in training or validation)\n",
        _exp_intro(ms)
        + f" Test subjects ({len(ms['subjects']['test'])}): "
        + ", ".join(ms["subjects"]["test"])
        + f". Validation subjects ({len(ms['subjects']['val'])}): "
        + ", ".join(ms["subjects"]["val"])
        + ".\n",
        _table(ms, PUBLISHED["mmlu"]),
        f"TextClassifier − TF-IDF APGR (all), paired bootstrap 95 % interval: "
        f"{ms['apgr_textclassifier_minus_tfidf_ci95'][0]:+.3f} to "
        f"{ms['apgr_textclassifier_minus_tfidf_ci95'][1]:+.3f}.\n",
        _cascade_table(ms),
    ]
    if "gsm8k_random" in e:
        g = e["gsm8k_random"]
        parts += [
            "### GSM8K, random split (stratified 50 / 10 / 40, seed 0)\n",
            _exp_intro(g) + "\n",
            _table(g, PUBLISHED["gsm8k"]),
            _cascade_table(g),
        ]
    if "mt_bench_transfer" in e:
        mt = e["mt_bench_transfer"]
        parts += [
            "### MT-Bench, transfer from MMLU (no MT-Bench training)\n",
            f"{mt['sizes']['test']} questions after decontamination are too few to train and "
            "test on, so the routers trained on the MMLU random split route MT-Bench first "
            "turns, as the paper's routers (trained on other data) do; quality is the mean "
            "GPT-4 judge score of both turns "
            f"(weak {mt['test_quality']['weak']:.2f}, strong {mt['test_quality']['strong']:.2f}). "
            "With this few questions the intervals are wide; and an MMLU correctness label is "
            "a different target from a judge's score of open-ended answers.\n",
            _table(mt, PUBLISHED["mt_bench"]),
        ]
    parts += [
        "### Cost of the router\n",
        f"Measured {res['when']} on {m['cpu_count']} CPU cores ({m['model_name']}; flags from "
        "`grep -o 'avx512[a-z_]*\\|amx[a-z_]*\\|avx2' /proc/cpuinfo | sort -u`, which cuts "
        "`avx512_bf16` to `avx512_bf`: "
        f"{m['cpu_flags']}), torch {m['torch']} with {m['torch_threads']} threads, load "
        f"average {m['load_before']:.1f} before / {m['load_after']:.1f} after. Encoding "
        f"every MMLU question once for the sweep: {t['encode_mmlu_s']:.0f} s "
        f"({t['encode_mmlu_texts_per_s']:.0f} texts/s). TextClassifier fit on "
        f"{mr['sizes']['train']} questions: {tc['fit_s']:.0f} s ({tc['fit_cpu_s']:.0f} CPU s); "
        f"routing {tc['predict_texts_per_s']:.0f} queries/s in batch, "
        f"p50 {tc['p50_ms_one_query']:.1f} ms for one query. Whole run {t['total_s']:.0f} s "
        f"wall, {t['cpu_s']:.0f} CPU s, peak RSS {t['peak_rss_mb']:.0f} MB.\n",
        "Command (from the repository root, holding the shared CPU lock):\n",
        f"```\n{res['command']}\n```\n",
        *(
            [f"This text was re-rendered from that run's JSON with `{res['rerendered_with']}`.\n"]
            if "rerendered_with" in res
            else []
        ),
        "### Caveats\n",
        "- Not like for like with the published rows. The paper evaluates on all MMLU "
        "questions with routers trained on other data (Chatbot Arena preferences, augmented "
        "with extra labelled data); here the router trains on half of MMLU itself and is "
        "scored on 40 % of it. Same benchmark, same model pair, same metric code, different "
        "protocol: the comparison is indicative.\n"
        "- The random split lets the router learn per-subject difficulty (see the subject "
        "prior row, which knows nothing but the subject); the subject-disjoint split is the "
        "honest figure for new kinds of query.\n"
        "- One seed, one split each; the bootstrap interval covers test-sampling noise only, "
        "not split or training noise. The decile columns move by a few hundredths between "
        "random draws (see the random rows' spread).\n"
        "- On MMLU and GSM8K the oracle's APGR exceeds 1 because it also avoids the "
        "questions where only the weak model is right.\n"
        "- The two MMLU splits test different questions (different subjects, different "
        "quality gaps), so their APGRs are not comparable with each other; compare routers "
        "within a table.\n"
        "- Settings were chosen on small validation parts: "
        f"{mr['sizes']['val']} MMLU questions (random), {len(ms['subjects']['val'])} subjects "
        f"(subject-disjoint), {e['gsm8k_random']['sizes']['val']} GSM8K problems; the "
        "cascade rows show how far a threshold tuned there lands from its target on the "
        "test part.\n"
        f"- MT-Bench is a transfer test on {e['mt_bench_transfer']['sizes']['test']} "
        "questions: its intervals are wide, and its "
        "label (a judge's score of open-ended answers) differs from the MMLU correctness the "
        "routers learned.\n"
        "- The published rows give CPT(50%) and APGR only (CPT(80%) is not in our reference "
        "list); they are quoted, not re-run.\n"
        "- The TextClassifier sees the first 128 tokens of each prompt (21 % of MMLU "
        "prompts are longer).\n",
    ]
    return "\n".join(parts)


def write_results(section: str) -> None:
    """Replace this benchmark's section of RESULTS.md, or append it at the end."""
    text = RESULTS_MD.read_text("utf-8")
    start = text.find(SECTION)
    if start < 0:
        RESULTS_MD.write_text(text.rstrip("\n") + "\n\n" + section, "utf-8")
        return
    end = text.find("\n## ", start + len(SECTION))
    rest = text[end + 1 :] if end >= 0 else ""
    RESULTS_MD.write_text(text[:start] + section + ("\n" + rest if rest else ""), "utf-8")


# ---------------------------------------------------------------- main


def _machine(torch_threads: int) -> dict[str, Any]:
    import torch

    flags = subprocess.run(
        "grep -o 'avx512[a-z_]*\\|amx[a-z_]*\\|avx2' /proc/cpuinfo | sort -u",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    name = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu_count": os.cpu_count(),
        "model_name": name,
        "cpu_flags": " ".join(flags),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch_threads,
    }


def _subsample(task: Task, limit: int) -> Task:
    if not limit or limit >= len(task.texts):
        return task
    keep = np.linspace(0, len(task.texts) - 1, limit).astype(int)
    return Task(
        task.name,
        [task.texts[i] for i in keep],
        task.weak[keep],
        task.strong[keep],
        [task.group[i] for i in keep],
        task.dropped,
    )


def _encode(texts: list[str]) -> tuple[NDArray[np.float32], float]:
    from slmstack.retrieval.encoder import SentenceEncoder

    start = time.perf_counter()
    enc = SentenceEncoder.from_ref("minilm", max_length=MAX_LENGTH)
    return enc.encode(texts).vectors, time.perf_counter() - start


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items() if k not in ("model", "transfer")}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples for APGR intervals")
    p.add_argument("--random-seeds", type=int, default=200, help="draws of the random router")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--limit", type=int, default=0, help="smoke test: N questions per benchmark")
    p.add_argument("--json", type=Path, default=RESULTS_JSON)
    p.add_argument("--write-results", action="store_true", help="update bench/RESULTS.md")
    p.add_argument(
        "--from-json", type=Path, help="re-render the RESULTS.md section from a saved run"
    )
    args = p.parse_args()
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text("utf-8"))
        saved["rerendered_with"] = "python bench/routellm.py " + " ".join(sys.argv[1:])
        section = markdown(saved)
        print(section)
        if args.write_results:
            write_results(section)
        return 0
    root = args.data_dir / "routellm" / "evals"
    need = [
        root / "mmlu" / "responses",
        root / "gsm8k" / "gsm8k_responses.csv",
        root / "mt_bench" / "judgements.jsonl",
    ]
    missing = [str(x) for x in need if not x.exists()]
    if missing:
        print(
            "missing RouteLLM data: " + ", ".join(missing) + "\nIt is expected in "
            "../shared/datasets/routellm (see its README); pass --data-dir.",
            file=sys.stderr,
        )
        return 1
    import torch

    torch.set_num_threads(args.threads)
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    mmlu = _subsample(load_mmlu(root), args.limit)
    gsm = _subsample(load_gsm8k(root), args.limit)
    mt = load_mt_bench(root)
    data = {
        t.name: {
            "n": len(t.texts),
            "dropped": t.dropped,
            "weak_quality": float(t.weak.mean()),
            "strong_quality": float(t.strong.mean()),
        }
        for t in (mmlu, gsm, mt)
    }
    print(json.dumps(data), flush=True)
    x_mmlu, enc_s = _encode(mmlu.texts)
    x_gsm, _ = _encode(gsm.texts)
    x_mt, _ = _encode(mt.texts)
    print(f"encoded {len(mmlu.texts)} MMLU questions in {enc_s:.0f} s", flush=True)
    exps: dict[str, Json] = {}
    print("MMLU, random split", flush=True)
    exps["mmlu_random"] = run_experiment(
        mmlu, random_split(mmlu, args.seed), x_mmlu, args, prior=True, extra=mt
    )
    print("MMLU, subject-disjoint split", flush=True)
    split, subjects = subject_split(mmlu, args.seed)
    exps["mmlu_subjects"] = run_experiment(mmlu, split, x_mmlu, args, prior=False)
    exps["mmlu_subjects"]["subjects"] = subjects
    print("GSM8K, random split", flush=True)
    exps["gsm8k_random"] = run_experiment(
        gsm, random_split(gsm, args.seed), x_gsm, args, prior=False
    )
    print("MT-Bench, transfer", flush=True)
    exps["mt_bench_transfer"] = run_transfer(mt, exps["mmlu_random"]["transfer"], x_mt, args)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    from slmstack.evaluation.speed import peak_rss_mb

    res = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0 flock "
        "/tmp/slmstack-cpu.lock .venv/bin/python bench/routellm.py " + " ".join(sys.argv[1:]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            **_machine(args.threads),
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        },
        "data": data,
        "published": PUBLISHED,
        "experiments": exps,
        "timings": {
            "total_s": time.perf_counter() - start,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": peak_rss_mb(),
            "encode_mmlu_s": enc_s,
            "encode_mmlu_texts_per_s": len(mmlu.texts) / enc_s,
        },
    }
    section = markdown(res)
    print("\n" + section)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(_jsonable(res), indent=1) + "\n", "utf-8")
    if args.write_results and not args.limit:
        write_results(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
