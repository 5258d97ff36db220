"""ContractNLI: the ComplianceChecker against majority, TF-IDF + LR and a local LLM.

Trains on ContractNLI dev (61 NDAs); the checker holds out 20% of dev (12 documents) to
choose its settings (GRID, by accuracy + Contradiction F1) and its review threshold;
test (123 NDAs) is scored once, with the chosen settings refitted on all of dev.
Measures follow Koreeda & Manning (2021): NLI accuracy and F1 of Entailment and
Contradiction per hypothesis, averaged over the hypotheses that have that gold verdict
(as their evaluation code does), and evidence mAP over the gold spans of
entailed/contradicted pairs (see slmstack.compliance.metrics for how it is approximated).

    .venv/bin/python bench/contractnli.py --write-results   # takes the CPU lock itself
    .venv/bin/python bench/contractnli.py --phase llm --write-results   # no llama server up

The LLM phase starts Qwen2.5-Coder-1.5B (the benchmarks' stand-in, llama.cpp server) and
asks it zero-shot about a fixed, stratified sample of test pairs (20 per gold verdict),
giving it the hypothesis and the 5 spans the checker's evidence model ranks highest
(the whole contract does not fit its window); the checker is scored on the same pairs.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from _machine import cpu_lock, machine

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "contractnli"
RESULTS = REPO / "bench" / "results" / "contractnli.json"
SAMPLE = REPO / "bench" / "results" / "contractnli-llm-sample.json"
MODEL = "qwen2.5-1.5b"
COMMAND = ".venv/bin/python bench/contractnli.py --write-results"
# Settings tried on the dev hold-out (12 documents). The shared similarity model alone
# (min_own=10**6, and c or head_c at 0.25) reached 0.73-0.74 accuracy and 0.54-0.56
# evidence mAP there; per-hypothesis evidence models (min_own=5) 0.80 and 0.81, so all
# rows keep min_own=5. They differ in the document head: the first is the head before
# the per-hypothesis blocks, balanced classes and the contradiction bias (which only
# predicted Contradiction where it is the majority verdict); see the head search on dev
# in bench/results/contractnli-dev-search.json.
OLD_HEAD = {"per_hypothesis_head": False, "balanced_head": False, "contradiction_bias": 0.0}
NEW_HEAD = {"per_hypothesis_head": True, "balanced_head": True, "contradiction_bias": None}
GRID = [
    {"min_own": 5, **OLD_HEAD},
    {"min_own": 5, "per_hypothesis_head": False, "balanced_head": True, "contradiction_bias": None},
    {"min_own": 5, "per_hypothesis_head": True, "balanced_head": False, "contradiction_bias": None},
    {"min_own": 5, **NEW_HEAD},
    {"min_own": 5, **NEW_HEAD, "head_c": 10.0},
]
PER_VERDICT = 20

# Koreeda & Manning (2021), "ContractNLI: A Dataset for Document-level Natural Language
# Inference for Contracts", Findings of EMNLP 2021, Table 2 (test set, mean of 3 runs);
# trained on the 423-document train split, which is not in ../shared.
PUBLISHED = {
    "Span NLI BERT (BERT-base)": {"evidence_map": 0.885, "accuracy": 0.838,
                                  "f1_contradicted": 0.287, "f1_entailed": 0.765},
    "Span NLI BERT (BERT-large)": {"evidence_map": 0.922, "accuracy": 0.875,
                                   "f1_contradicted": 0.357, "f1_entailed": 0.834},
    "Doc TF-IDF+SVM (paper)": {"accuracy": 0.733, "f1_contradicted": 0.197, "f1_entailed": 0.641},
    "Majority vote (paper)": {"accuracy": 0.674, "f1_contradicted": 0.083, "f1_entailed": 0.428},
    "Span TF-IDF+SVM (paper, evidence only)": {"evidence_map": 0.836},
}  # fmt: skip


def rounded(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in d.items()}


def baselines(dev: list[Any], test: list[Any]) -> dict[str, Any]:
    """Per-hypothesis majority, and per-hypothesis doc TF-IDF + LR (C chosen on dev-val)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from slmstack.compliance.metrics import Judged, nli_report

    hyps = sorted({h for d in dev for h in d.labels})
    majority = {h: Counter(d.labels[h].verdict for d in dev).most_common(1)[0][0] for h in hyps}
    out: dict[str, Any] = {}
    out["majority"] = rounded(nli_report([Judged(h, d.labels[h].verdict, majority[h])
                                          for d in test for h in hyps]))  # fmt: skip
    order = np.random.default_rng(0).permutation(len(dev))
    val = set(order[: round(0.2 * len(dev))].tolist())
    tr = [d for i, d in enumerate(dev) if i not in val]
    va = [d for i, d in enumerate(dev) if i in val]

    def run(train: list[Any], evaluate: list[Any], c: float) -> list[Any]:
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        x = vec.fit_transform([d.text for d in train])
        xe = vec.transform([d.text for d in evaluate])
        judged = []
        for h in hyps:
            y = [d.labels[h].verdict for d in train]
            if len(set(y)) == 1:
                pred = [y[0]] * len(evaluate)
            else:
                lr = LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(x, y)
                pred = list(lr.predict(xe))
            judged += [
                Judged(h, d.labels[h].verdict, p) for d, p in zip(evaluate, pred, strict=False)
            ]
        return judged

    scores = {c: nli_report(run(tr, va, c)) for c in (0.1, 1.0, 10.0)}
    best = max(scores, key=lambda c: scores[c]["accuracy"] + scores[c]["f1_contradicted"])
    out["tfidf_lr"] = {"C": best, "val": rounded(scores[best]),
                       "test": rounded(nli_report(run(dev, test, best)))}  # fmt: skip
    # Evidence baseline: rank spans by TF-IDF cosine with the hypothesis (the paper's
    # "Span TF-IDF+Cosine").
    from slmstack.compliance.metrics import average_precision

    vec = TfidfVectorizer(sublinear_tf=True).fit([d.text[a:b] for d in dev for a, b in d.spans])
    aps: dict[str, list[float]] = defaultdict(list)
    for d in test:
        xs = vec.transform([d.text[a:b] for a, b in d.spans])
        for h, ann in d.labels.items():
            if ann.evidence:
                s = (xs @ vec.transform([h]).T).toarray()[:, 0]
                aps[h].append(average_precision(s, frozenset(ann.evidence)))
    out["span_tfidf_cosine_evidence_map"] = round(
        float(np.mean([np.mean(v) for v in aps.values()])), 4
    )
    return out


def main_phase() -> dict[str, Any]:
    from slmstack.compliance import read_contractnli
    from slmstack.compliance.checker import ComplianceChecker
    from slmstack.compliance.metrics import nli_report

    dev = read_contractnli(DATA / "dev.json")
    test = read_contractnli(DATA / "test.json")
    report: dict[str, Any] = {"dev_docs": len(dev), "test_docs": len(test), "grid": []}
    report |= baselines(dev, test)
    print("baselines", {k: report[k] for k in ("majority", "tfidf_lr")}, flush=True)
    best, best_score, best_checker = None, -1.0, None
    fitted = []
    for params in GRID:
        start = time.perf_counter()
        checker = ComplianceChecker(**params, seed=0).fit(dev)
        m = checker.metrics_
        score = m["val_accuracy"] + m["val_f1_contradicted"]
        report["grid"].append({**params, "fit_s": round(time.perf_counter() - start, 1),
                               "bias_chosen": checker.models_.head.contradiction_bias,
                               **rounded({k: v for k, v in m.items()})})  # fmt: skip
        print(params, rounded(m), flush=True)
        fitted.append(checker)
        if score > best_score:
            best, best_score, best_checker = params, score, checker
    assert best_checker is not None
    report["chosen"] = best
    start = time.perf_counter()
    judged = best_checker.judge_documents(test)
    report["test_seconds"] = round(time.perf_counter() - start, 1)
    report["checker_test"] = rounded(nli_report(judged))
    report["review_threshold"] = best_checker.review_threshold_
    print("checker test", report["checker_test"], flush=True)
    # Every row's test scores, for the record only: the choice above saw dev alone.
    for row, checker in zip(report["grid"], fitted, strict=True):
        row["test"] = rounded(nli_report(checker.judge_documents(test)))
    report["llm_sample"] = make_sample(best_checker, test)
    return report


def carry_llm_answers(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The LLM's answers from the last --phase llm, rescored beside the new checker.

    Kept only when every sampled pair got the same five spans (the evidence model did
    not change), so the LLM saw exactly what it would see now; otherwise None.
    """
    if not SAMPLE.exists() or not RESULTS.exists():
        return None
    old = {(it["doc"], it["hypothesis"]): it for it in json.loads(SAMPLE.read_text())}
    peer = json.loads(RESULTS.read_text()).get("llm_peer")
    for it in items:
        before = old.get((it["doc"], it["hypothesis"]))
        if peer is None or before is None or before["spans"] != it["spans"] or "llm" not in before:
            return None
        it["llm"], it["llm_raw"] = before["llm"], before["llm_raw"]
    return {**peer, "llm": sample_scores(items, "llm"), "checker": sample_scores(items, "checker")}


def make_sample(checker: Any, test: list[Any]) -> dict[str, Any]:
    """A fixed stratified sample of test pairs, the checker's answers and top-5 spans."""
    import numpy as np

    from slmstack.compliance._nli import VERDICTS

    rng = random.Random(0)
    by_verdict: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for i, d in enumerate(test):
        for h, a in sorted(d.labels.items()):
            by_verdict[a.verdict].append((i, h))
    picked = [p for v in VERDICTS for p in rng.sample(by_verdict[v], PER_VERDICT)]
    items = []
    for i, h in picked:
        d = test[i]
        unit = checker._unit(d.text, d.spans)
        probs, p_ev, _ = checker.models_.judge(unit, checker._hypothesis(h))
        top = np.argsort(-p_ev, kind="stable")[:5]
        items.append({"doc": d.id, "hypothesis": h, "gold": d.labels[h].verdict,
                      "checker": VERDICTS[int(np.argmax(probs))],
                      "spans": [unit.texts[int(j)] for j in sorted(top)]})  # fmt: skip
    out = {"checker": sample_scores(items, "checker"), "items": items}
    return out


def sample_scores(items: list[dict[str, Any]], key: str) -> dict[str, float]:
    from slmstack.compliance.metrics import Judged, nli_report

    r = nli_report([Judged("all", it["gold"], it[key]) for it in items if it.get(key)])
    return rounded({k: r[f"micro_{k}"] for k in ("accuracy", "f1_entailed", "f1_contradicted")}
                   | {"pairs": r["pairs"]})  # fmt: skip


PROMPT = """You review a non-disclosure agreement.
Here are the passages most relevant to a hypothesis.

Passages:
{spans}

Hypothesis: {hypothesis}

Does the agreement entail the hypothesis, contradict it, or not mention it?
Answer with one word: Entailment, Contradiction or NotMentioned."""


def llm_phase() -> dict[str, Any]:
    """The LLM on the stored sample; its answers are written to the sample file."""
    import urllib.request

    sys.path.insert(0, str(REPO / "bench"))
    from _llm_process import free_port, stop, wait_ready
    from slmstack.models import resolve

    busy = subprocess.run(["pgrep", "-f", "llama_cpp.server"], capture_output=True, text=True)
    if busy.stdout.strip():
        raise SystemExit("a llama_cpp.server is running (another benchmark); run later")
    items = json.loads(SAMPLE.read_text())
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    cmd = ["nice", "-n", "10", sys.executable, "-m", "llama_cpp.server", "--model",
           str(resolve(MODEL).weights), "--model_alias", MODEL, "--n_ctx", "4096",
           "--n_threads", "2", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    log_path = Path("/tmp/contractnli-llm-server.log")
    log = log_path.open("ab")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    seconds = []
    try:
        wait_ready(url, server, log_path)
        for it in items:
            spans = "\n".join(f"- {s}" for s in it["spans"])
            body = {
                "model": MODEL,
                "temperature": 0,
                "max_tokens": 6,
                "messages": [
                    {
                        "role": "user",
                        "content": PROMPT.format(spans=spans, hypothesis=it["hypothesis"]),
                    }
                ],
            }
            req = urllib.request.Request(url + "/chat/completions", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})  # fmt: skip
            start = time.perf_counter()
            with urllib.request.urlopen(req, timeout=600) as response:
                text = json.load(response)["choices"][0]["message"]["content"]
            seconds.append(time.perf_counter() - start)
            word = re.sub(r"[^a-z]", "", text.lower())
            it["llm_raw"] = text
            it["llm"] = ("contradicted" if word.startswith("contra") else
                         "entailed" if word.startswith("entail") else "not_mentioned")  # fmt: skip
    finally:
        stop(server)
        log.close()
    SAMPLE.write_text(json.dumps(items, indent=1, ensure_ascii=False))
    return {
        "llm": sample_scores(items, "llm"),
        "checker": sample_scores(items, "checker"),
        "llm_mean_s_per_pair": round(sum(seconds) / len(seconds), 2),
        "model": "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (llama.cpp, 2 threads), zero-shot",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phase", choices=("main", "llm"), default="main")
    parser.add_argument("--write-results", action="store_true", help="update " + str(RESULTS))
    args = parser.parse_args()
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if args.phase == "llm":
        report = {**old, "llm_peer": llm_phase()}
    else:
        with cpu_lock() as waited:
            print(f"lock held after {waited:.0f} s", flush=True)
            start = time.perf_counter()
            report = {**main_phase(), "published": PUBLISHED, "machine": machine(),
                      "command": COMMAND}  # fmt: skip
            report["wall_s"] = round(time.perf_counter() - start, 1)
        items = report["llm_sample"].pop("items")
        report["llm_sample"] = report["llm_sample"]["checker"]
        peer = carry_llm_answers(items)
        if peer is not None:
            report["llm_peer"] = peer
        else:
            print("the sampled spans changed: run --phase llm again for the LLM peer")
        if args.write_results:
            SAMPLE.write_text(json.dumps(items, indent=1, ensure_ascii=False))
    print(json.dumps({k: v for k, v in report.items() if k != "published"}, indent=1))
    if args.write_results:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
