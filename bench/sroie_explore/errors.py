"""Probe (validation only): where the field extractor loses on unseen vendors, all four fields.

Trains the shipped configuration (``text_decode="lines"``, ``group_by="company"``) on each
inner vendor split of the design pool (``bench/sroie_select.py``: receipts on the training
side of every outer split, so no outer test receipt is read) and writes every miss on the
inner validation vendors, with the candidate lines around it, to a JSON file.

    flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python bench/sroie_explore/errors.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slmstack.data.fields import gold_value, parse_schema, same_value
from slmstack.errors import DataError
from slmstack.evaluation.extraction import field_metrics
from slmstack.skills.fields import FieldExtractor
from sroie import SCHEMA, load, readable
from sroie_select import INNER_SEEDS, design_pool
from sroie_vendors import drop_rescans, vendor_split


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default="../shared/datasets/sroie/train/data")
    ap.add_argument("--params", default='{"text_decode": "lines", "group_by": "company"}')
    ap.add_argument("--out", default="/tmp/sroie_errors.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    params = json.loads(args.params)
    specs = parse_schema(SCHEMA)
    docs, _ = drop_rescans(load(Path(args.data_dir)))
    pool = design_pool(docs, 0.2)
    rows, misses = [], []
    for seed in INNER_SEEDS:
        train, val = vendor_split(pool, 0.25, seed)
        train = [ex for ex in train if readable(ex, specs)]
        fx = FieldExtractor(schema=SCHEMA, **params).fit(train)
        preds = fx.predict([ex.text for ex in val])
        m = field_metrics(specs, val, preds)
        row = {k: round(100 * v["f1"], 1) for k, v in m["per_field"].items()}
        row["micro"] = round(100 * m["micro"]["f1"], 1)
        rows.append(row)
        print(f"inner seed {seed}: {row}", flush=True)
        for ex, pred in zip(val, preds, strict=True):
            for spec in specs:
                raw = ex.values.get(spec.name)
                got = pred.data["fields"][spec.name]
                try:
                    gold = gold_value(spec, raw) if raw else None
                except DataError:  # an unreadable truth counts as a miss
                    gold = None
                ok = (got["value"] is not None and gold is not None
                      and same_value(spec, str(got["value"]).casefold(), gold))  # fmt: skip
                if not ok:
                    misses.append({"seed": seed, "source": Path(ex.source).stem,
                                   "field": spec.name, "gold": raw, "got": got.get("value"),
                                   "conf": got.get("confidence"), "evidence": got.get("evidence"),
                                   "text": ex.text})  # fmt: skip
    mean = {k: round(statistics.fmean(r[k] for r in rows), 1) for k in rows[0]}
    print("mean", mean)
    Path(args.out).write_text(json.dumps({"rows": rows, "mean": mean, "misses": misses}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
