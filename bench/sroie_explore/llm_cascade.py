"""Probe (validation only): does a local LLM help the field extractor on unseen vendors?

On each inner vendor split of the design pool (``bench/sroie_select.py``: receipts on the
training side of every outer split, so no outer test receipt is read), train the shipped
``FieldExtractor`` configuration on the inner training side, run ``LLMExtractor`` (a local
GGUF generator, JSON-constrained, ``k`` demonstrations retrieved from the inner training
side) on the inner validation vendors, and score, per field:
- the extractor alone; the LLM alone;
- a per-field cascade: the extractor's value unless its confidence is below ``t`` (or it
  reports the field missing), then the LLM's value, for a grid of ``t``.

The LLM's answers are cached in a JSONL file keyed by receipt and model, so a rerun only
calls the model for receipts it has not answered.

    flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python bench/sroie_explore/llm_cascade.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slmstack.data.fields import FieldExample, parse_schema
from slmstack.evaluation.extraction import field_metrics
from slmstack.skills.fields import FieldExtractor
from slmstack.skills.llm_extractor import LLMExtractor
from slmstack.types import Prediction
from sroie import SCHEMA, load, readable
from sroie_select import INNER_SEEDS, design_pool
from sroie_vendors import drop_rescans, vendor_split

GRID = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.01)


def _cached(path: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                out[row["key"]] = row
    return out


def _merge(fx: Prediction, llm: dict[str, Any] | None, t: float, fields: list[str]) -> Prediction:
    """The extractor's record, each field below ``t`` replaced by the LLM's value."""
    got = {k: dict(v) for k, v in fx.data["fields"].items()}
    for name in fields:
        mine = got[name]
        low = mine.get("value") is None or (mine.get("confidence") or 0.0) < t
        if low and llm is not None and llm["fields"].get(name, {}).get("value") is not None:
            got[name] = dict(llm["fields"][name])
    return Prediction(data={"fields": got})


def _score(specs, val, preds) -> dict[str, float]:
    m = field_metrics(specs, val, preds)
    row = {k: round(100 * v["f1"], 2) for k, v in m["per_field"].items()}
    row["micro"] = round(100 * m["micro"]["f1"], 2)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default="../shared/datasets/sroie/train/data")
    ap.add_argument("--model", default="qwen2.5-0.5b")
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--method", default="greedy", help="LLMExtractor confidence_method")
    ap.add_argument("--limit", type=int, default=0, help="receipts per inner split (0: all)")
    ap.add_argument("--cache", default="/tmp/sroie_llm_cache.jsonl")
    ap.add_argument("--json", default="bench/results/sroie_llm_cascade.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    specs = parse_schema(SCHEMA)
    names = [s.name for s in specs]
    docs, _ = drop_rescans(load(Path(args.data_dir)))
    pool = design_pool(docs, 0.2)
    cache_path = Path(args.cache)
    cache = _cached(cache_path)
    all_val: list[FieldExample] = []
    fx_all: list[Prediction] = []
    llm_all: list[dict[str, Any] | None] = []
    per_split = []
    seconds = []
    for seed in INNER_SEEDS:
        train, val = vendor_split(pool, 0.25, seed)
        train = [ex for ex in train if readable(ex, specs)]
        if args.limit:
            val = val[: args.limit]
        fx = FieldExtractor(schema=SCHEMA, text_decode="lines", group_by="company").fit(train)
        fx_preds = fx.predict([ex.text for ex in val])
        llm = LLMExtractor(schema=SCHEMA, model=args.model, k=args.k,
                           confidence_method=args.method,
                           backend_options={"n_ctx": args.n_ctx}).fit(train)  # fmt: skip
        answers: list[dict[str, Any] | None] = []
        for i, ex in enumerate(val):
            key = f"{args.model}|k{args.k}|{args.method}|{seed}|{Path(ex.source).stem}"
            if key not in cache:
                t0 = time.perf_counter()
                pred = llm.predict([ex.text])[0]
                seconds.append(time.perf_counter() - t0)
                row = {"key": key, "fields": pred.data.get("fields"),
                       "abstained": pred.abstained, "warnings": list(pred.warnings)}  # fmt: skip
                with cache_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
                cache[key] = row
                print(f"  seed {seed} #{i + 1}/{len(val)} {seconds[-1]:.1f} s", flush=True)
            row = cache[key]
            answers.append(row if row.get("fields") else None)
        llm_preds = [Prediction(data={"fields": a["fields"] if a else {}}) for a in answers]
        split = {"seed": seed, "val_receipts": len(val),
                 "extractor": _score(specs, val, fx_preds),
                 "llm": _score(specs, val, llm_preds)}  # fmt: skip
        print(json.dumps(split), flush=True)
        per_split.append(split)
        all_val += val
        fx_all += fx_preds
        llm_all += answers
    grid = {str(t): _score(specs, all_val, [_merge(p, a, t, names) for p, a in
                                            zip(fx_all, llm_all, strict=True)])
            for t in GRID}  # fmt: skip
    # per field, the threshold with the best pooled F1 (validation: the inner splits)
    best = {n: max(GRID, key=lambda t, n=n: grid[str(t)][n]) for n in names}
    print("grid (pooled over inner splits):")
    for t, row in grid.items():
        print(f"  t={t}: {row}")
    print("best threshold per field:", best)
    out = {"model": args.model, "k": args.k, "method": args.method, "per_split": per_split,
           "pooled": {"extractor": _score(specs, all_val, fx_all),
                      "llm": _score(specs, all_val, [Prediction(data={"fields": a["fields"] if a
                                                                      else {}}) for a in llm_all])},
           "grid": grid, "best_threshold": best,
           "llm_seconds_per_receipt": (round(sum(seconds) / len(seconds), 2)
                                       if seconds else None)}  # fmt: skip
    print(json.dumps(out["pooled"]))
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
