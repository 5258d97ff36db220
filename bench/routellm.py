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

Files: this one runs the experiments; ``_routellm_data.py`` holds the settings, the
published figures, loading and splits; ``_routellm_metrics.py`` the paper's metrics;
``_routellm_routers.py`` the routers; ``_routellm_report.py`` the RESULTS.md section.

Run (heavy: wrap it in the shared CPU lock)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0 \
        flock /tmp/slmstack-cpu.lock .venv/bin/python bench/routellm.py --write-results
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine
from _routellm_data import (
    DEFAULT_DATA,
    MAX_LENGTH,
    PUBLISHED,
    RESULTS_JSON,
    SCHEMES,
    Array,
    Json,
    Split,
    Task,
    load_gsm8k,
    load_mmlu,
    load_mt_bench,
    random_split,
    subject_split,
)
from _routellm_metrics import boot_apgr, cascade, evaluate
from _routellm_report import markdown, write_results
from _routellm_routers import (
    apgr_on_val,
    fit_text_classifier,
    oracle_scores,
    p_strong,
    random_router,
    sweep_lr,
)

# ---------------------------------------------------------------- experiments


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
        boots[name] = boot_apgr(scores, w, s, args.bootstrap, args.seed)
        routers[name] = {"settings": settings, **evaluate(scores, w, s, boots[name])}
        print(
            f"  {name:38s} APGR {routers[name]['deciles']['apgr']:.3f} (deciles) "
            f"{routers[name]['all']['apgr']:.3f} (all)",
            flush=True,
        )

    length = np.array([len(t) for t in task.texts], float)
    sign = 1.0 if apgr_on_val(length[va], task, va) >= apgr_on_val(-length[va], task, va) else -1.0
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
            apgr = apgr_on_val(score[va], task, va)
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
        "textclassifier_val_apgr": apgr_on_val(skill["val"], task, va),
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
            "TF-IDF + LR": p_strong(tf_choice["model"], tfidf.transform(extra.texts)),
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
        "LR on MiniLM vectors (MMLU-trained)": p_strong(transfer["lr_model"], mt_vectors),
        "slmstack TextClassifier (MMLU-trained)": transfer["TextClassifier"],
        "oracle": oracle_scores(w, s, args.seed),
    }
    return {
        "sizes": {"test": len(w)},
        "test_quality": {"weak": float(w.mean()), "strong": float(s.mean())},
        "routers": {
            k: {"settings": {}, **evaluate(v, w, s, boot_apgr(v, w, s, args.bootstrap, args.seed))}
            for k, v in scores.items()
        },
        "random": random_router(w, s, args.random_seeds),
    }


# ---------------------------------------------------------------- main


def _machine_info(torch_threads: int) -> dict[str, Any]:
    import torch

    return {**machine(), "torch": torch.__version__, "torch_threads": torch_threads}


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
            **_machine_info(args.threads),
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
