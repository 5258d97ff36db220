"""Probe (validation only): do the OCR boxes' coordinates help on unseen vendors?

SROIE's box files give each OCR line's quadrilateral; the benchmarks read the text only.
This probe adds geometry facts to every candidate line (height against the receipt's
median line height, as a proxy for font size; horizontal centre, left edge and width
against the receipt's width; the vertical gaps to the lines above and below, in median
line heights; the neighbours' heights) and compares the shipped configuration with and
without them on the inner vendor splits of the design pool (``bench/sroie_select.py``:
receipts on the training side of every outer split, so no outer test receipt is read),
all four fields.

The facts reach the extractor through a bench-only patch of the feature function, keyed
by the document's lines; nothing in the package changes.

    flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python bench/sroie_explore/layout.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from _machine import machine
from slmstack.data.fields import FieldExample, parse_schema
from slmstack.evaluation.extraction import field_metrics
from slmstack.skills import _field_features, _field_scoring
from slmstack.skills.fields import FieldExtractor
from sroie import SCHEMA, readable
from sroie_select import INNER_SEEDS, design_pool
from sroie_vendors import drop_rescans, vendor_split

BOXES: dict[tuple[str, ...], list[tuple[float, float, float, float]]] = {}
N_GEOM = 12
_features = _field_features.features
LAYOUT = {"on": False}


def load_with_boxes(data: Path) -> list[FieldExample]:
    out = []
    for key in sorted((data / "key").glob("*.json")):
        lines, boxes = [], []
        for raw in (data / "box" / (key.stem + ".csv")).read_text(encoding="utf-8").splitlines():
            parts = raw.split(",", 8)
            if len(parts) == 9 and parts[8].strip():
                xs = [float(v) for v in parts[0:8:2]]
                ys = [float(v) for v in parts[1:8:2]]
                lines.append(parts[8].strip())
                boxes.append((min(xs), min(ys), max(xs), max(ys)))
        BOXES[tuple(lines)] = boxes
        values = json.loads(key.read_text(encoding="utf-8"))
        out.append(
            FieldExample("\n".join(lines), {k: values.get(k) or None for k in SCHEMA}, str(key))
        )
    return out


def geometry(boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Per line: the geometry facts (N_GEOM columns)."""
    b = np.asarray(boxes, dtype=np.float64)
    h = np.maximum(b[:, 3] - b[:, 1], 1.0)
    med = float(np.median(h))
    left, right = float(b[:, 0].min()), float(b[:, 2].max())
    width = max(right - left, 1.0)
    centre = ((b[:, 0] + b[:, 2]) / 2 - (left + right) / 2) / width
    gap_up = np.r_[3.0, (b[1:, 1] - b[:-1, 3]) / med]
    gap_down = np.r_[(b[1:, 1] - b[:-1, 3]) / med, 3.0]
    rel_h = h / med
    cols = [
        np.log(rel_h),
        np.abs(centre),
        centre,
        (b[:, 0] - left) / width,
        (b[:, 2] - b[:, 0]) / width,
        np.clip(gap_up, -2, 3),
        np.clip(gap_down, -2, 3),
        (gap_up < -0.5).astype(float),  # on the same row as the line above
        (gap_down < -0.5).astype(float),
        np.r_[0.0, np.log(rel_h[:-1])],
        np.r_[np.log(rel_h[1:]), 0.0],
        (rel_h >= 1.4).astype(float),
    ]
    return np.stack(cols, axis=1)


def patched(spec, cands, lines, embed, dim):  # type: ignore[no-untyped-def]
    dense, words = _features(spec, cands, lines, embed, dim)
    if not LAYOUT["on"]:
        return dense, words
    key = tuple(ln.text for ln in lines)
    geo = geometry(BOXES[key]) if key in BOXES and lines else None
    extra = np.zeros((len(cands), N_GEOM), dtype=np.float32)
    if geo is not None:
        for i, c in enumerate(cands):
            extra[i] = geo[c.line]
    return np.concatenate([dense, extra], axis=1).astype(np.float32), words


_field_scoring.features = patched  # type: ignore[attr-defined]


def score(params: dict[str, Any], pool: list[FieldExample]) -> list[dict[str, float]]:
    specs = parse_schema(SCHEMA)
    rows = []
    for seed in INNER_SEEDS:
        train, val = vendor_split(pool, 0.25, seed)
        train = [ex for ex in train if readable(ex, specs)]
        start = time.perf_counter()
        fx = FieldExtractor(schema=SCHEMA, **params).fit(train)
        fit_s = time.perf_counter() - start
        m = field_metrics(specs, val, fx.predict([ex.text for ex in val]))
        row = {k: round(100 * v["f1"], 1) for k, v in m["per_field"].items()}
        row.update(micro=round(100 * m["micro"]["f1"], 1), fit_s=round(fit_s, 1), seed=seed)
        rows.append(row)
        print(f"  inner seed {seed}: {row}", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default="../shared/datasets/sroie/train/data")
    ap.add_argument(
        "--params", default='{"text_decode": "lines", "group_by": "company", "val_folds": 5}'
    )
    ap.add_argument("--variants", default="text,layout")
    ap.add_argument("--json", default="bench/results/sroie_layout_probe.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    params = json.loads(args.params)
    docs, _ = drop_rescans(load_with_boxes(Path(args.data_dir)))
    pool = design_pool(docs, 0.2)
    print(f"design pool: {len(pool)} receipts")
    results = {}
    for name in args.variants.split(","):
        LAYOUT["on"] = name == "layout"
        print(name, flush=True)
        rows = score(params, pool)
        keys = ("company", "address", "date", "total", "micro")
        mean = {k: round(statistics.fmean(r[k] for r in rows), 1) for k in keys}
        results[name] = {"inner_splits": rows, "mean": mean}
        print(f"  mean {mean}", flush=True)
    out = {"machine": machine(), "params": params, "design_pool": len(pool),
           "inner_seeds": INNER_SEEDS, "variants": results,
           "command": " ".join(["flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python",
                                "bench/sroie_explore/layout.py", *sys.argv[1:]])}  # fmt: skip
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
