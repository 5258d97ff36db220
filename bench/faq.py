"""FAQ benchmark: Bitext customer-support intents as a knowledge base, CLINC150 out-of-scope.

Knowledge base: one entry per Bitext intent (27), whose answer is the first response
the data set gives for that intent, and whose questions are half of that intent's
utterances (seeded split). Another 10% of the utterances, plus CLINC150 ``oos_val``
(100 queries), are the held-out calibration queries; the remaining 40% of utterances
and CLINC150 ``oos_test`` (1,000 queries) are the test.

Systems, all in this run, all with their threshold chosen on the same calibration
queries by the same rule (minimise wrong answers + wrong abstentions):

* ``tfidf-nn``: TF-IDF (word 1-2 grams, sublinear tf) nearest question, raw cosine;
* ``st-cosine``: plain sentence-transformers all-MiniLM-L6-v2, nearest question, raw cosine;
* ``faq``: FAQAnswerer, calibrated confidence (similarity + margin), same encoder;
* ``faq-auto``: FAQAnswerer calibrated on the KB alone (leave-one-out), no outside data;
* ``faq-auto-5%``: the same, with the threshold bounded to withhold at most 5% of the
  right leave-one-out answers (``max_wrong_abstain=0.05``);
* ``faq-ft``: FAQAnswerer after 1 epoch of contrastive fine-tuning on paraphrase pairs
  drawn from the KB's own utterances.

Run (from the repository root):

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/faq.py > /tmp/faq-bench.log 2>&1
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine
from slmstack.retrieval import KBEntry
from slmstack.retrieval.calibration import choose_threshold
from slmstack.skills.faq import FAQAnswerer
from slmstack.training.calibration import expected_calibration_error

BITEXT = "bitext_llm_responses/Bitext_Sample_Customer_Support_Training_Dataset.csv"
CLINC = "clinc150/data_full.json"


def load_data(data_dir: Path, seed: int):
    missing = [p for p in (BITEXT, CLINC) if not (data_dir / p).is_file()]
    if missing:
        sys.exit(
            f"missing data: {', '.join(str(data_dir / p) for p in missing)}. Pass --data-dir "
            "pointing at the shared datasets folder (../shared/datasets)."
        )
    by_intent: dict[str, list[str]] = defaultdict(list)
    answer: dict[str, str] = {}
    with open(data_dir / BITEXT, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            by_intent[row["intent"]].append(row["instruction"].strip())
            answer.setdefault(row["intent"], row["response"].strip())
    rng = random.Random(seed)
    kb, cal, test = [], [], []
    for intent in sorted(by_intent):
        utts = list(dict.fromkeys(by_intent[intent]))  # drop exact repeats
        rng.shuffle(utts)
        n_kb, n_cal = len(utts) // 2, len(utts) // 10
        kb.append(KBEntry(intent, utts[0], answer[intent], tuple(utts[1:n_kb])))
        cal += [(u, intent) for u in utts[n_kb : n_kb + n_cal]]
        test += [(u, intent) for u in utts[n_kb + n_cal :]]
    clinc = json.loads((data_dir / CLINC).read_text())
    cal += [(t, None) for t, _ in clinc["oos_val"]]
    test += [(t, None) for t, _ in clinc["oos_test"]]
    # The same question may appear under two intents in Bitext; keep the KB consistent.
    owner: dict[str, str] = {}
    clean = []
    for e in kb:
        qs = [q for q in e.questions if owner.setdefault(q.casefold(), e.id) == e.id]
        clean.append(KBEntry(e.id, qs[0], e.answer, tuple(qs[1:])))
    # A query equal to a KB question after case and punctuation folding is a lookup, not
    # a test of paraphrase: it leaves the calibration and test sets (counted, reported).
    known = {fold(q) for e in clean for q in e.questions}
    dropped = {
        "calibration": sum(fold(q) in known for q, _ in cal),
        "test": sum(fold(q) in known for q, _ in test),
    }
    cal = [(q, g) for q, g in cal if fold(q) not in known]
    test = [(q, g) for q, g in test if fold(q) not in known]
    return clean, cal, test, dropped


def fold(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def paraphrase_pairs(kb: list[KBEntry], seed: int, per_entry: int = 80):
    rng = random.Random(seed)
    pairs = []
    for e in kb:
        qs = list(e.questions)
        for _ in range(min(per_entry, len(qs))):
            a, b = rng.sample(qs, 2)
            pairs.append((a, b))
    rng.shuffle(pairs)
    return pairs


def score(name, pred_ids, conf, test, fit_s, predict_s, ece=None):
    """Metrics for one system. pred_ids: answered entry id or None (abstained)."""
    gold = [g for _, g in test]
    ins = [i for i, g in enumerate(gold) if g is not None]
    oos = [i for i, g in enumerate(gold) if g is None]
    right = sum(pred_ids[i] == gold[i] for i in ins)
    wrong_ans = sum(pred_ids[i] is not None and pred_ids[i] != gold[i] for i in ins)
    wrong_abs = sum(pred_ids[i] is None for i in ins)
    oos_abs = sum(pred_ids[i] is None for i in oos)
    n_abs = sum(p is None for p in pred_ids)
    return {
        "system": name,
        "top1_in_scope": right / len(ins),
        "wrong_answer_in_scope": wrong_ans / len(ins),
        "wrong_abstain_in_scope": wrong_abs / len(ins),
        "abstain_recall_oos": oos_abs / len(oos),
        "abstain_precision": oos_abs / n_abs if n_abs else float("nan"),
        "ece_test": ece,
        "fit_s": fit_s,
        "ms_per_query": 1000 * predict_s / len(test),
    }


def nn_peer(name, embed, kb, cal, test):
    """Nearest KB question by raw cosine; threshold chosen on ``cal`` by the same rule."""
    start = time.perf_counter()
    keys = [e.id for e in kb for _ in e.questions]
    index = embed([q for e in kb for q in e.questions], fit=True)

    def run(queries):
        sims = embed([q for q, _ in queries]) @ index.T
        best = sims.argmax(axis=1)
        return [keys[b] for b in best], sims[np.arange(len(best)), best]

    ids, sim = run(cal)
    ok = np.array([i == g for i, (_, g) in zip(ids, cal, strict=True)])
    threshold = choose_threshold(sim.astype(np.float64), ok, wrong_answer_cost=1.0).threshold
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    ids, sim = run(test)
    predict_s = time.perf_counter() - start
    pred = [i if s >= threshold else None for i, s in zip(ids, sim, strict=True)]
    row = score(name, pred, sim, test, fit_s, predict_s)
    row["threshold"] = float(threshold)
    return row


def tfidf_embedder():
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)

    def embed(texts, fit=False):
        m = vec.fit_transform(texts) if fit else vec.transform(texts)
        return m.toarray().astype(np.float32)

    return embed


def st_embedder():
    from sentence_transformers import SentenceTransformer

    from slmstack.models import resolve

    model = SentenceTransformer(str(resolve("minilm").path), device="cpu")

    def embed(texts, fit=False):
        return model.encode(list(texts), batch_size=64, normalize_embeddings=True)

    return embed


def faq_system(name, kb, cal, test, max_wrong_abstain=None, **fit_kwargs):
    start = time.perf_counter()
    skill = FAQAnswerer(seed=0, max_wrong_abstain=max_wrong_abstain).fit(kb, **fit_kwargs)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    preds = skill.predict([q for q, _ in test])
    predict_s = time.perf_counter() - start
    pred = [p.label if p.abstained is None else None for p in preds]
    conf = np.array([p.confidence for p in preds])
    # Calibration on the test set: is "confidence" the probability the answer is right?
    nearest = [p.label or p.data["nearest"]["entry"]["id"] for p in preds]
    right = np.array([n == g for n, (_, g) in zip(nearest, test, strict=True)], dtype=np.int64)
    ece = expected_calibration_error(np.stack([1 - conf, conf], axis=1), right)
    row = score(name, pred, conf, test, fit_s, predict_s, ece=ece)
    row["threshold"] = skill.threshold_
    row["held_out"] = skill.metrics_
    if skill.history_:
        row["finetune_val_history"] = [round(h["val_metric"], 4) for h in skill.history_]
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/datasets"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument(
        "--json",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "faq.json",
        help="result file (committed with bench/RESULTS.md)",
    )
    args = ap.parse_args()
    kb, cal, test, dropped = load_data(args.data_dir, args.seed)
    n_q = sum(len(e.questions) for e in kb)
    n_in = sum(g is not None for _, g in test)
    print(
        f"KB: {len(kb)} entries, {n_q} questions; calibration: {len(cal)} queries; "
        f"test: {n_in} in-scope + {len(test) - n_in} CLINC150 oos_test; left out as equal "
        f"to a KB question after case and punctuation folding: {dropped['calibration']} "
        f"calibration, {dropped['test']} test",
        flush=True,
    )
    rows = [
        nn_peer("tfidf-nn", tfidf_embedder(), kb, cal, test),
        nn_peer("st-cosine", st_embedder(), kb, cal, test),
        faq_system("faq", kb, cal, test, calibration=cal),
        faq_system("faq-auto", kb, cal, test),
        faq_system("faq-auto-5%", kb, cal, test, max_wrong_abstain=0.05),
    ]
    for r in rows:
        print(json.dumps(r), flush=True)
    if not args.skip_finetune:
        pairs = paraphrase_pairs(kb, args.seed)
        rows.append(faq_system("faq-ft", kb, cal, test, calibration=cal, pairs=pairs))
        print(json.dumps(rows[-1]), flush=True)
    header = (
        "| system | top-1 in scope | wrong answers in scope | wrong abstentions in scope "
        "| abstain recall (oos) | abstain precision | ECE (test) | threshold | fit s | ms/query |"
    )
    print()
    print(header)
    print("|" + "---|" * 10)
    for r in rows:
        ece = "n/a (raw cosine)" if r["ece_test"] is None else f"{r['ece_test']:.3f}"
        print(
            f"| {r['system']} | {r['top1_in_scope']:.2%} | {r['wrong_answer_in_scope']:.2%} | "
            f"{r['wrong_abstain_in_scope']:.2%} | {r['abstain_recall_oos']:.2%} | "
            f"{r['abstain_precision']:.2%} | {ece} | {r['threshold']:.3f} | {r['fit_s']:.1f} | "
            f"{r['ms_per_query']:.2f} |"
        )
    if args.json:
        result = {
            "machine": machine(),
            "seed": args.seed,
            "kb_entries": len(kb),
            "kb_questions": n_q,
            "calibration_queries": len(cal),
            "test_in_scope": n_in,
            "test_oos": len(test) - n_in,
            "dropped_equal_to_kb_question": dropped,
            "rows": rows,
        }
        args.json.write_text(json.dumps(result, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
