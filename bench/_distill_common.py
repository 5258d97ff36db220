"""``bench/distill.py``: settings, and the data and machine helpers."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "clinc150" / "data_full.json"
JSON_OUT = REPO / "bench" / "results" / "distill.json"
RESULTS_MD = REPO / "bench" / "RESULTS.md"
MACHINE = "cpu-2vcpu"
SECTION = "## Distillation from a local LLM teacher (`bench/distill.py`)"


# ---------------------------------------------------------------- data and machine
def read_clinc() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    return [(t, y) for t, y in data["train"]], [(t, y) for t, y in data["test"]]


def split(train: list[tuple[str, str]], args: argparse.Namespace) -> dict[str, list[int]]:
    """Seed (per label), validation and pool indices into ``train``, disjoint, fixed seeds.

    The pool is a prefix of one fixed shuffled order, so a smaller N reuses the labels
    bought for a larger one.
    """
    by_label: dict[str, list[int]] = {}
    for i, (_, y) in enumerate(train):
        by_label.setdefault(y, []).append(i)
    rng = random.Random(args.seed)
    seed = sorted(i for y in sorted(by_label) for i in rng.sample(by_label[y], args.seed_per_label))
    rest = sorted(set(range(len(train))) - set(seed))
    val = sorted(random.Random(args.seed + 1).sample(rest, args.n_val))
    rest = sorted(set(rest) - set(val))
    order = random.Random(args.seed + 2).sample(rest, len(rest))
    return {"seed": seed, "val": val, "pool": order[: args.n_pool]}


def wait_for_other_server(model: str) -> float:
    """Wait (polling every 60 s) until no other server of ``model`` runs; the seconds waited."""
    start = time.monotonic()
    while True:
        found = subprocess.run(["pgrep", "-f", f"model_alias {model}"], capture_output=True,
                               text=True).stdout.split()  # fmt: skip
        if not found:
            return time.monotonic() - start
        print(f"another {model} server runs (pid {' '.join(found)}); waiting 60 s", flush=True)
        time.sleep(60)
