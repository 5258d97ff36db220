"""Few-shot BANKING77, validation only: do new queries written by a 1.5B generator help?

``bench/fewshot_augment.py`` had Qwen2.5-0.5B rewrite each example, and the rewrites often
changed the intent. This probe asks the larger local generator (Qwen2.5-Coder-1.5B,
llama.cpp, 2 threads) for *new* queries per intent instead: the prompt gives the intent's
name read as words and the draw's few examples of it, and asks for ``--per-intent`` new
customer messages with the same intent (JSON-constrained). Copies of an example and empty
or run-away texts are dropped (``slmstack.distill.augment.keep_rewrites``).

Heads on frozen, L2-normalised mpnet vectors (logistic regression, C 10, each intent's
name as one more example, as ``TextClassifier(strategy="head", base="mpnet",
name_examples=True)`` fits it), trained on the examples alone and on the examples plus
generated queries at weight ``w``, with and without a consistency filter (a generated
query is kept only when the head fitted on the examples alone puts it in its intent).
Scored on the draws' validation samples (5 per intent outside the draw's 20-shot set, as
``heads.py``); the test split is not read. Generations are cached under
``/tmp/slmstack-fewshot-generate`` (an interrupted run goes on).

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
        .venv/bin/python bench/fewshot_explore/generate_intents.py --draws 0 --shots 5

Writes bench/results/fewshot_generate_intents.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_names import encode
from self_train import unit, vectors

from _machine import machine
from fewshot import draw, read

OUT = Path(__file__).resolve().parents[1] / "results" / "fewshot_generate_intents.json"
CACHE = Path("/tmp/slmstack-fewshot-generate")
PROMPT = (
    "These are messages that customers sent to their bank's support chat. All of them have "
    'the intent "{name}":\n{examples}\n\nWrite {n} new messages that customers could send '
    "with exactly this intent and no other. Vary the wording, the length and the details, "
    'as real customers do. Answer with JSON: {{"messages": [...]}}.'
)


def generate(backend: Any, name: str, examples: list[str], n: int, seed: int) -> list[str]:
    """``n`` new queries for one intent, unfiltered (a cut-off generation gives none)."""
    from slmstack.backends import ChatMessage, CompletionRequest, parse_json_output
    from slmstack.errors import BackendError

    schema = {
        "type": "object",
        "required": ["messages"],
        "properties": {
            "messages": {"type": "array", "items": {"type": "string"}, "minItems": n // 2,
                         "maxItems": n},
        },
    }
    listed = "\n".join(f"- {x}" for x in examples)
    request = CompletionRequest(
        [ChatMessage("user", PROMPT.format(name=name, examples=listed, n=n))],
        max_tokens=40 * n + 48,
        temperature=0.8,
        seed=seed,
        json_schema=schema,
    )
    completion = backend.complete(request)
    if completion.finish_reason == "length":
        return []
    try:
        data = parse_json_output(completion, request)
    except BackendError:  # llama.cpp's grammar let an unescaped control character through
        return []
    got = data.get("messages") if isinstance(data, dict) else None
    return [str(x) for x in got] if isinstance(got, list) else []


def generated(args: argparse.Namespace, seed: int, k: int, xs: list[str], ys: list[str],
              classes: list[str], words: list[str]) -> dict[str, list[str]]:  # fmt: skip
    """Kept generated queries per intent, cached as JSONL (one line per intent)."""
    from slmstack.distill.augment import keep_rewrites

    path = CACHE / f"{args.model}-{k}shot-draw{seed}-n{args.per_intent}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    done = {r["intent"]: r for r in rows}
    todo = [c for c in classes if c not in done]
    if todo:
        from slmstack.backends import load_backend

        backend = load_backend(args.model, n_threads=2)
        start = time.perf_counter()
        with path.open("a", encoding="utf-8") as f:
            for i, c in enumerate(todo):
                examples = [x for x, y in zip(xs, ys, strict=True) if y == c]
                raw = generate(backend, words[classes.index(c)], examples, args.per_intent,
                               seed * 1000 + classes.index(c))  # fmt: skip
                kept: list[str] = []
                dropped: dict[str, int] = {}
                for text in raw:  # dropped when it copies any example or an earlier text
                    ok, why = keep_rewrites(" ".join(examples + kept), [text], max_ratio=1.0)
                    if ok and all(ok[0].casefold() != e.casefold() for e in examples):
                        kept.append(ok[0])
                    for key, v in why.items():
                        dropped[key] = dropped.get(key, 0) + v
                row = {"intent": c, "kept": kept, "raw": len(raw), "dropped": dropped}
                f.write(json.dumps(row) + "\n")
                f.flush()
                done[c] = row
                print(f"  {i + 1}/{len(todo)} {c}: {len(kept)} kept "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    return {c: done[c]["kept"] for c in classes}


def score(x: Any, y: Any, weight: Any, xv: Any, yv: Any) -> float:
    """Validation accuracy (%) of logistic regression (C 10) fitted on ``x``, ``y``."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=10, max_iter=5000).fit(x, y, sample_weight=weight)
    return float((model.predict(xv) == yv).mean() * 100)


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-1.5b")
    ap.add_argument("--per-intent", type=int, default=10)
    ap.add_argument("--draws", default="0", help="comma-separated draw seeds (0,1,2)")
    ap.add_argument("--shots", default="5", help="comma-separated examples per intent")
    args = ap.parse_args()
    texts, labels = read("train")
    vec = vectors("mpnet", texts)
    lab = np.array(labels)
    classes = sorted(set(labels))
    words = [c.replace("_", " ").lower() for c in classes]
    names = unit(encode(words, "mpnet"))
    rows: list[dict[str, Any]] = []
    start = time.time()
    for seed in (int(s) for s in args.draws.split(",")):
        for k in (int(s) for s in args.shots.split(",")):
            tr, va = draw(texts, labels, k, seed, 5)
            xs, ys = unit(vec[tr]), lab[tr]
            xv, yv = unit(vec[va]), lab[va]
            gen = generated(args, seed, k, [texts[i] for i in tr], list(ys), classes, words)
            gx_text = [t for c in classes for t in gen[c]]
            gy = np.array([c for c in classes for _ in gen[c]])
            gx = unit(encode(gx_text, "mpnet"))
            base_x, base_y = np.vstack([xs, names]), np.concatenate([ys, classes])

            plain = LogisticRegression(C=10, max_iter=5000).fit(base_x, base_y)
            agree = plain.predict(gx) == gy
            result: dict[str, Any] = {"draw": seed, "k": k, "generated": len(gy)}
            result["consistent"] = int(agree.sum())
            result["head with names (shipped)"] = score(base_x, base_y, None, xv, yv)
            for filt, mask in (("all", np.ones(len(gy), bool)), ("consistent", agree)):
                for w in (0.3, 0.5, 1.0):
                    weight = np.concatenate([np.ones(len(base_y)), np.full(mask.sum(), w)])
                    x = np.vstack([base_x, gx[mask]])
                    y = np.concatenate([base_y, gy[mask]])
                    result[f"+ generated ({filt}), weight {w:g}"] = score(x, y, weight, xv, yv)
            print(json.dumps(result), flush=True)
            rows.append(result)
    seconds = round(time.time() - start)
    data = {"machine": machine(), "args": vars(args), "rows": rows, "seconds": seconds}
    OUT.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
