"""CUAD contracts: ``ClauseFinder`` (TF-IDF + MiniLM) against TF-IDF alone, same run.

Data: ``../shared/datasets/cuad/master_clauses.csv`` (per contract and category, the
clause snippets) and ``full_contract_txt/`` (the contract texts), CUAD v1, 510 contracts,
41 categories. Each contract is split into clauses (paragraphs) by the skill's own
splitter; a clause carries a category when one of that category's snippets overlaps it.

Split: contracts sorted by file name; every 5th (index % 5 == 0) is a test contract
(102), the rest train (408). ``--max-contracts`` subsamples (first N by name) for a
quicker run; the default uses all.

Scores on the test contracts: clause-level precision/recall/F1 per category and micro
over all categories, and contract-level F1 (is the category present anywhere in the
contract?), which is what the ``absent`` list of a prediction answers.

Peer: the same one-vs-rest logistic regression on TF-IDF word 1-2 grams, without the
encoder and without the clause's position (``ClauseFinder(base=None, position_weight=0)``),
a classic strong baseline for legal clauses. Also in the run: the finder without its
encoder (TF-IDF and position, ``ClauseFinder(base=None)``), so that the encoder's own
share is visible.

Run (heavy: wrap it in the shared CPU lock)::

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/cuad.py > /tmp/bench_cuad.log 2>&1
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")

from slmstack.data.clauses import label_clauses
from slmstack.evaluation.speed import peak_rss_mb
from slmstack.skills.clauses import ClauseFinder

csv.field_size_limit(sys.maxsize)
# The peer is the plain TF-IDF + LR a user would write; then the finder without its encoder
# (TF-IDF and the clause's position); last, the finder with its defaults (the main system:
# MiniLM, position weight 0.5, chosen on validation contracts).
SYSTEMS = (
    ("TF-IDF + LR (peer)", {"base": None, "position_weight": 0.0}),
    ("ClauseFinder TF-IDF + position (no encoder)", {"base": None}),
    ("ClauseFinder TF-IDF + MiniLM + position", {"base": "minilm"}),
)


def md_row(*cells):
    print("| " + " | ".join(str(c) for c in cells) + " |")


def load(data: Path, max_contracts: int):
    texts = {p.stem.lower(): p for p in (data / "full_contract_txt").glob("*.txt")}
    contracts = []
    with (data / "master_clauses.csv").open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        cats = [c for c in reader.fieldnames if f"{c}-Answer" in reader.fieldnames]
        for row in reader:
            path = texts.get(Path(row["Filename"]).stem.lower())
            if path is None:
                continue
            ann = {c: [s for s in ast.literal_eval(row[c] or "[]") if s.strip()] for c in cats}
            contracts.append(
                (path.name, path.read_text(encoding="utf-8"), {c: v for c, v in ann.items() if v})
            )
    contracts.sort()
    return contracts[:max_contracts] if max_contracts else contracts, cats


def prf(tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def evaluate(finder, test_clauses, test_owner, cats):
    probs = finder.predict_clauses(
        [c.text for c in test_clauses], positions=[c.position for c in test_clauses]
    )
    col = {t: j for j, t in enumerate(finder.types_)}
    out, tot, doc_tot = {}, [0, 0, 0], [0, 0, 0]
    owners = np.array(test_owner)
    for cat in cats:
        y = np.array([cat in c.labels for c in test_clauses])
        pred = (
            probs[:, col[cat]] >= finder.thresholds_[col[cat]]
            if cat in col
            else np.zeros(len(y), bool)
        )
        tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
        docs = sorted(set(test_owner))
        dy = np.array([y[owners == d].any() for d in docs])
        dp = np.array([pred[owners == d].any() for d in docs])
        dtp, dfp, dfn = int((dp & dy).sum()), int((dp & ~dy).sum()), int((~dp & dy).sum())
        out[cat] = {
            "f1": prf(tp, fp, fn)[2],
            "support": int(y.sum()),
            "contract_f1": prf(dtp, dfp, dfn)[2],
            "contracts": int(dy.sum()),
        }
        tot = [tot[0] + tp, tot[1] + fp, tot[2] + fn]
        doc_tot = [doc_tot[0] + dtp, doc_tot[1] + dfp, doc_tot[2] + dfn]
    return out, prf(*tot), prf(*doc_tot)


def macro(per_cat):
    """Mean clause F1 over the categories with test clauses."""
    present = [v["f1"] for v in per_cat.values() if v["support"]]
    return sum(present) / len(present)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default="../shared/datasets/cuad")
    ap.add_argument("--max-contracts", type=int, default=0)
    ap.add_argument("--max-length", type=int, default=128, help="encoder tokens per clause")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is faster on a busy machine)"
    )
    ap.add_argument(
        "--json",
        default=str(Path(__file__).resolve().parent / "results" / "cuad.json"),
        help="result file (committed with bench/RESULTS.md)",
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    data = Path(args.data_dir)
    if not (data / "master_clauses.csv").is_file() or not (data / "full_contract_txt").is_dir():
        print(
            f"missing {data}/master_clauses.csv or {data}/full_contract_txt: CUAD is expected "
            "in ../shared/datasets/cuad (or pass --data-dir)",
            file=sys.stderr,
        )
        return 1
    contracts, cats = load(data, args.max_contracts)
    train, test, test_owner, lost = [], [], [], 0
    test_texts = []
    for i, (name, text, ann) in enumerate(contracts):
        clauses, missing = label_clauses(text, ann, source=name)
        lost += missing
        if i % 5 == 0:
            test += clauses
            test_owner += [name] * len(clauses)
            test_texts.append(text)
        else:
            train += clauses
    n_snip = sum(len(v) for _, _, a in contracts for v in a.values())
    n_train = len(contracts) - len(test_texts)
    print(f"{len(contracts)} contracts: train {n_train} ({len(train)} clauses), "
          f"test {len(test_texts)} ({len(test)} clauses); "
          f"{lost} of {n_snip} snippets not found in the text", flush=True)  # fmt: skip
    results, speed = {}, {}
    for name, params in SYSTEMS:
        start = time.perf_counter()
        finder = ClauseFinder(max_length=args.max_length, **params).fit(train)
        train_s = time.perf_counter() - start
        per_cat, micro, doc_micro = evaluate(finder, test, test_owner, cats)
        sample = test_texts[:10]
        start = time.perf_counter()
        ClauseFinder.predict(finder, sample)
        per_doc = (time.perf_counter() - start) / len(sample)
        speed[name] = {
            "train_s": train_s,
            "contracts_per_s": 1 / per_doc,
            "peak_rss_mb_after": peak_rss_mb(),
        }
        results[name] = {
            "per_category": per_cat,
            "micro": micro,
            "contract_micro": doc_micro,
            "val": finder.metrics_,
            "params": params,
            "macro_f1": macro(per_cat),
        }
        print(
            name,
            "micro",
            [round(x, 4) for x in micro],
            "contract micro",
            [round(x, 4) for x in doc_micro],
            flush=True,
        )

    names = list(results)
    print()
    md_row("system", "clause micro P", "clause micro R", "clause micro F1",
           "clause macro F1 (categories in test)", "contract micro F1")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for n in names:
        m, d = results[n]["micro"], results[n]["contract_micro"]
        md_row(n, f"{100 * m[0]:.1f}", f"{100 * m[1]:.1f}", f"{100 * m[2]:.2f}",
               f"{100 * results[n]['macro_f1']:.2f}", f"{100 * d[2]:.1f}")  # fmt: skip
    print()
    print("| system | training s | contracts/s | peak RSS MB |")
    print("|---|---|---|---|")
    for n, s in speed.items():
        md_row(n, f"{s['train_s']:.0f}", f"{s['contracts_per_s']:.2f}",
               f"{s['peak_rss_mb_after']:.0f}")  # fmt: skip
    print()
    main_name = names[-1]
    per = results[main_name]["per_category"]
    md_row("category", "test clauses", f"clause F1 ({names[0]})", f"clause F1 ({main_name})",
           f"contract F1 ({main_name})")  # fmt: skip
    print("|---|---|---|---|---|")
    for cat in sorted(per, key=lambda c: -per[c]["f1"]):
        peer_f1 = 100 * results[names[0]]["per_category"][cat]["f1"]
        md_row(cat, per[cat]["support"], f"{peer_f1:.1f}", f"{100 * per[cat]['f1']:.1f}",
               f"{100 * per[cat]['contract_f1']:.1f}")  # fmt: skip
    worst = sorted((c for c in per if per[c]["support"]), key=lambda c: per[c]["f1"])[:5]
    print()
    print(
        "5 worst categories with test clauses (clause F1):",
        ", ".join(f"{c} ({100 * per[c]['f1']:.1f})" for c in worst),
    )
    Path(args.json).write_text(json.dumps({"results": results, "speed": speed}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
