"""SST-2 sentiment: trivial baselines, frozen MiniLM and the fine-tuning path, dev scored once.

Data: ``../shared/datasets/sst2`` (GLUE SST-2: ``train.tsv`` about 67k phrases, ``dev.tsv``
872 sentences). Target (issue 11): dev accuracy >= 91.3, DistilBERT's published figure.

Protocol. Validation is carved out of train (``_sst2_data.py``): 2,000 distinct training
rows of at least 8 words (seed 2026), and every other training row that is part of a
validation row, or contains one, is dropped from the training pool. Every choice (the
TF-IDF ``C``, which fine-tuned encoder is the headline, the epoch kept) is made on
train-derived data; ``dev.tsv`` is scored once per system, in the same run, and decides
nothing. ``test.tsv`` is not read.

Systems, in one run:

* ``majority``: the most frequent label of the training pool;
* ``tfidf_lr``: TF-IDF of word 1-2 grams + ``LogisticRegression``, ``C`` chosen on
  validation, trained on the whole pool;
* ``head_minilm``: ``TextClassifier(strategy="head")`` (frozen all-MiniLM-L6-v2 + logistic
  regression), trained on the whole pool;
* ``finetune_<base>``: ``TextClassifier(strategy="finetune", base=...)`` on a random
  subsample of the pool (``--train-size``, sized by the timing probe so that the run fits
  the shared CPU); the skill keeps the best epoch on its own internal validation split
  (``val_fraction`` of the subsample, early stopping with ``patience``).

Timing probe first (``--probe``): a few fine-tuning steps per encoder and precision on
pool phrases, to size ``--train-size``; its figures are kept in the result file.

Run (heavy; the script does not take the CPU lock, the caller does)::

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
        SLMSTACK_PROGRESS=0 .venv/bin/python bench/sst2.py --probe
    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
        SLMSTACK_PROGRESS=0 .venv/bin/python bench/sst2.py --budget-s 1800 --write-results

Without ``--train-size`` and ``--precision`` the full run takes both from the probe in
``--out`` (``size_from_probe``): the subsample that fits ``--budget-s``, and the faster
precision (``auto`` only where bf16 measured faster).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

from _machine import machine
from _sst2_data import Split, carve_validation, read, subsample
from _sst2_section import write_results

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "sst2.json"
VAL_SEED = 2026
SUBSAMPLE_SEED = 0
C_GRID = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
TARGET = 91.3


def accuracy(pred: Any, gold: list[str]) -> float:
    """Accuracy in percent."""
    return float((np.asarray(pred) == np.asarray(gold)).mean() * 100)


def majority(pool: Split, evals: dict[str, Split]) -> dict[str, Any]:
    """Predict the most frequent training label for every text."""
    labels, counts = np.unique(pool.labels, return_counts=True)
    top = str(labels[counts.argmax()])
    out: dict[str, Any] = {"system": "majority", "config": {"label": top},
                           "train_rows": len(pool.texts)}  # fmt: skip
    for name, split in evals.items():
        out[f"{name}_accuracy"] = accuracy([top] * len(split.labels), split.labels)
    return out


def tfidf_lr(pool: Split, val: Split, dev: Split) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """TF-IDF (word 1-2 grams) + LogisticRegression; ``C`` chosen on validation only."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x_pool = vec.fit_transform(pool.texts)
    x_val = vec.transform(val.texts)
    grid = []
    fitted = {}
    for c in C_GRID:
        lr = LogisticRegression(C=c, max_iter=2000).fit(x_pool, pool.labels)
        fitted[c] = lr
        grid.append({"C": c, "val_accuracy": accuracy(lr.predict(x_val), val.labels)})
    best = max(grid, key=lambda r: r["val_accuracy"])  # first of equals: the smaller C
    seconds = time.perf_counter() - start
    lr = fitted[best["C"]]
    t0 = time.perf_counter()
    dev_pred = lr.predict(vec.transform(dev.texts))
    predict_s = time.perf_counter() - t0
    row = {
        "system": "tfidf_lr",
        "config": {"ngram_range": [1, 2], "sublinear_tf": True, "C": best["C"]},
        "train_rows": len(pool.texts),
        "train_seconds": round(seconds, 1),
        "val_accuracy": best["val_accuracy"],
        "dev_accuracy": accuracy(dev_pred, dev.labels),
        "predict_texts_per_s": round(len(dev.texts) / predict_s, 1),
    }
    return row, grid


def skill_system(
    name: str, train: Split, val: Split, dev: Split, params: dict[str, Any]
) -> dict[str, Any]:
    """Fit ``TextClassifier(**params)`` on ``train``; score validation, then dev once."""
    from slmstack.skills.classifier import TextClassifier
    from slmstack.types import Example

    examples = [Example(t, y) for t, y in zip(train.texts, train.labels, strict=True)]
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        skill = TextClassifier(**params).fit(examples)
    fit_s = time.perf_counter() - start
    row: dict[str, Any] = {
        "system": name,
        "config": params,
        "train_rows": len(train.texts),
        "train_seconds": round(fit_s, 1),
        "fit_warnings": [str(w.message) for w in caught],
        "skill_metrics": skill.metrics_,
        "best_epoch": skill.best_epoch_,
        "history": skill.history_,
    }
    if skill.history_:  # fine-tuned: samples seen per second of the training loop
        seen = skill.metrics_["n_train"] * len(skill.history_)
        row["train_loop_seconds"] = round(skill.history_[-1]["seconds"], 1)
        row["train_samples_per_s"] = round(seen / skill.history_[-1]["seconds"], 1)
    truncated = {}
    for split_name, split in (("train", train), ("val", val), ("dev", dev)):
        lengths = skill._tokenize(split.texts).lengths
        truncated[split_name] = sum(1 for n in lengths if n > skill.window_)
    row["window"] = skill.window_
    row["truncated"] = truncated
    for split_name, split in (("val", val), ("dev", dev)):
        t0 = time.perf_counter()
        preds = skill.predict(split.texts)
        seconds = time.perf_counter() - t0
        row[f"{split_name}_accuracy"] = accuracy([p.label for p in preds], split.labels)
        row[f"{split_name}_predict_texts_per_s"] = round(len(split.texts) / seconds, 1)
        row[f"{split_name}_out_of_scope"] = sum(1 for p in preds if p.abstained)
    row["predict_texts_per_s"] = row["dev_predict_texts_per_s"]
    print(name, {k: row[k] for k in ("val_accuracy", "dev_accuracy", "train_seconds")},
          flush=True)  # fmt: skip
    return row


def probe(pool: Split, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Samples/s of the fine-tuning loop and texts/s of the forward pass, per base and precision."""
    import torch

    from slmstack.models.encoder import load_encoder, model_window, tokenize
    from slmstack.models.resolve import resolve
    from slmstack.models.shared import shared_tokenizer
    from slmstack.skills._classifier_training import ClassifierNet, finetune, forward_all
    from slmstack.training.loop import LoopConfig

    sample = subsample(pool, args.probe_steps * args.batch_size, seed=1)
    y = np.array([int(v) for v in sample.labels], dtype=np.int64)
    rows = []
    for base in args.bases:
        source = resolve(base)
        tokenizer = shared_tokenizer(source.path)
        for precision in args.probe_precisions:
            torch.manual_seed(0)
            encoder = load_encoder(source)
            window = model_window(tokenizer, encoder, args.max_length)
            ids = tokenize(tokenizer, sample.texts, window).input_ids
            net = ClassifierNet(encoder, 2, normalize=True, dropout=0.1)
            cfg = LoopConfig(epochs=1, learning_rate=5e-5, head_learning_rate=1e-3,
                             warmup_ratio=0.1, weight_decay=0.01, patience=1,
                             precision=precision)  # fmt: skip
            result = finetune(net, ids, y, evaluate=lambda: 0.0, cfg=cfg,
                              batch_size=args.batch_size, pad_id=int(tokenizer.pad_token_id or 0),
                              seed=0, label_smoothing=0.0, description="probe")  # fmt: skip
            t0 = time.perf_counter()
            forward_all(net, ids, what="logits", pad_id=int(tokenizer.pad_token_id or 0),
                        batch_size=64, precision=precision)  # fmt: skip
            fwd_s = time.perf_counter() - t0
            row = {
                "base": base,
                "precision": precision,
                "samples": len(ids),
                "mean_tokens": round(float(np.mean([len(x) for x in ids])), 1),
                "train_seconds": round(result.seconds, 1),
                "train_samples_per_s": round(len(ids) / result.seconds, 1),
                "forward_texts_per_s": round(len(ids) / fwd_s, 1),
            }
            print(row, flush=True)
            rows.append(row)
    return rows


def size_from_probe(
    probe: dict[str, Any], bases: list[str], epochs: int, val_fraction: float, budget_s: float
) -> dict[str, Any]:
    """The fine-tuning subsample (and precision) that fits ``budget_s`` seconds, from the probe.

    The precision is the faster of the probed ones for the slowest encoder (``auto``, which
    is bf16 on this CPU, only where bf16 measured faster). Seconds per training text: the
    training steps of every epoch, plus the forward passes the skill makes over it (the
    frozen probe, the internal validation each epoch, the scope statistics); fixed costs
    (TF-IDF, the frozen head on the pool, predicting validation and dev, loading) are
    estimated from the forward speeds. A model, not a promise: the run records it.
    """
    rows = probe["rows"]

    def speed(base: str, precision: str) -> dict[str, Any]:
        return next(r for r in rows if r["base"] == base and r["precision"] == precision)

    slowest = min(bases, key=lambda b: min(r["train_samples_per_s"] for r in rows
                                           if r["base"] == b))  # fmt: skip
    options = sorted({r["precision"] for r in rows if r["base"] == slowest})
    fastest = max(options, key=lambda p: speed(slowest, p)["train_samples_per_s"])
    per_text = 0.0
    fixed = 120.0  # reading, carving, TF-IDF grid, loading the encoders
    for base in bases:
        r = speed(base, fastest)
        per_text += (1 - val_fraction) * epochs / r["train_samples_per_s"]
        per_text += (2 + val_fraction * epochs) / r["forward_texts_per_s"]
        fixed += 2 * 2872 * 1.8 / r["forward_texts_per_s"]  # val + dev, longer texts, twice
    head = speed("minilm", fastest)["forward_texts_per_s"] if "minilm" in bases else 800.0
    fixed += 48000 / head
    size = max(2000, int(max(0.0, budget_s - fixed) / per_text) // 1000 * 1000)
    return {"train_size": size, "precision": "auto" if fastest == "bf16" else fastest,
            "measured_precision": fastest, "budget_s": budget_s,
            "estimated_fixed_s": round(fixed),
            "estimated_s_per_text": round(per_text, 4)}  # fmt: skip


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--probe", action="store_true", help="only the timing probe")
    p.add_argument("--probe-steps", type=int, default=20)
    p.add_argument("--probe-precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument(
        "--bases",
        nargs="+",
        default=["minilm", "mpnet"],
        help="encoders to fine-tune (the one best on validation is the headline)",
    )
    p.add_argument(
        "--train-size",
        type=int,
        default=None,
        help="fine-tuning subsample of the pool (default: sized by the probe)",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=1800,
        help="seconds the full run may take, for sizing from the probe",
    )
    p.add_argument("--head-train-size", type=int, default=None,
                   help="frozen-head training rows (default: the whole pool)")  # fmt: skip
    p.add_argument("--val-size", type=int, default=2000)
    p.add_argument("--min-words", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2, help="maximum epochs (best one kept)")
    p.add_argument("--patience", type=int, default=1)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--val-fraction", type=float, default=0.05,
                   help="the skill's own validation split of the subsample")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument(
        "--precision",
        default=None,
        help="fp32, bf16 or auto (default: the faster one in the probe)",
    )
    p.add_argument("--skip", nargs="*", default=[], help="systems not to run")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--write-results", action="store_true", help="write the RESULTS.md section")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing; write the RESULTS.md section from --out")  # fmt: skip
    return p.parse_args()


def main() -> None:
    args = _parse()
    command = " ".join(["python", "bench/sst2.py", *sys.argv[1:]])
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.report_only:
        write_results(old)
        return
    from slmstack.models.encoder import resolve_precision

    start = time.perf_counter()
    train, dev = read("train"), read("dev")
    pool, val, counts = carve_validation(train, n=args.val_size, min_words=args.min_words,
                                         seed=VAL_SEED)  # fmt: skip
    if args.probe:
        old["probe"] = {"command": command, "date": _now(), "machine": machine(),
                        "rows": probe(pool, args)}  # fmt: skip
        _save(args.out, old)
        return
    sizing = None
    if args.train_size is None or args.precision is None:
        if not old.get("probe"):
            raise SystemExit("no probe in --out: run with --probe first, or pass "
                             "--train-size and --precision")  # fmt: skip
        sizing = size_from_probe(old["probe"], args.bases, args.epochs, args.val_fraction,
                                 args.budget_s)  # fmt: skip
        args.train_size = args.train_size or sizing["train_size"]
        args.precision = args.precision or sizing["precision"]
        print("sized from the probe:", sizing, flush=True)
    ft_train = subsample(pool, args.train_size, SUBSAMPLE_SEED)
    head_train = subsample(pool, args.head_train_size, SUBSAMPLE_SEED)
    counts.update(finetune_subsample=len(ft_train.texts), head_train=len(head_train.texts),
                  dev=len(dev.texts))  # fmt: skip
    data: dict[str, Any] = {
        "date": _now(), "command": command, "machine": machine(), "data": counts,
        "protocol": (
            "validation: 2,000 train rows of >= 8 words (seed 2026), overlapping phrases "
            "removed from the training pool; every choice made on validation (or the skill's "
            "internal split of its training data); dev scored once per system"
        ),
        "probe": old.get("probe"),
        "sizing": sizing,
        "precision_ran": resolve_precision(args.precision),
        "systems": [],
    }  # fmt: skip
    runs: list[dict[str, Any]] = data["systems"]
    runs.append(majority(pool, {"val": val, "dev": dev}))
    if "tfidf_lr" not in args.skip:
        row, data["tfidf_grid"] = tfidf_lr(pool, val, dev)
        runs.append(row)
        print("tfidf_lr", row["val_accuracy"], row["dev_accuracy"], flush=True)
    _save(args.out, data)
    common = {"max_length": args.max_length, "precision": args.precision, "seed": 0}
    if "head_minilm" not in args.skip:
        params = {"strategy": "head", "base": "minilm", **common}
        runs.append(skill_system("head_minilm", head_train, val, dev, params))
        _save(args.out, data)
    for base in args.bases:
        if f"finetune_{base}" in args.skip:
            continue
        params = {"strategy": "finetune", "base": base, "epochs": args.epochs,
                  "patience": args.patience, "learning_rate": args.learning_rate,
                  "val_fraction": args.val_fraction, "batch_size": args.batch_size,
                  **common}  # fmt: skip
        runs.append(skill_system(f"finetune_{base}", ft_train, val, dev, params))
        _save(args.out, data)
    tuned = [r for r in runs if r["system"].startswith("finetune_")]
    if tuned:
        best = max(tuned, key=lambda r: r["val_accuracy"])
        data["chosen"] = {"system": best["system"], "by": "validation accuracy",
                          "dev_accuracy": best["dev_accuracy"], "target": TARGET,
                          "met": best["dev_accuracy"] >= TARGET}  # fmt: skip
    data["total_seconds"] = round(time.perf_counter() - start, 1)
    _save(args.out, data)
    print(json.dumps(data.get("chosen"), indent=1))
    if args.write_results:
        write_results(data)


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def _save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
