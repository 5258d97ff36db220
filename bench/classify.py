"""Benchmark ``TextClassifier`` against the classifier a user would write by hand.

Data: ``../shared/datasets/banking77`` (train.csv / test.csv) and the in-scope part of
``../shared/datasets/clinc150/data_full.json``. CLINC150's official ``val`` split is added
to the training data of every system (each ``TextClassifier`` holds out its own
validation split from it); the test split is never seen before evaluation.

Systems, all on the same all-MiniLM-L6-v2 weights and in the same run:

* ``baseline``: ``SentenceTransformer(folder).encode`` + sklearn
  ``LogisticRegression(C=10)`` (what a user writes without slmstack);
* ``head``: ``TextClassifier(strategy="head")``;
* ``finetune``: ``TextClassifier(strategy="finetune")``.

Each system runs in two fresh subprocesses: one trains and saves it (training wall time
and peak RSS while training), the other loads the saved artifact and evaluates it
(accuracy, macro-F1, ECE, single-query latency, batch throughput and serving peak RSS).

Run (heavy: wrap it in the shared CPU lock)::

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/classify.py --write-results
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from _classify_report import BASELINE_C, DATASETS, _label, _table, write_results  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "datasets"
SYSTEMS = ("baseline", "head", "finetune")

# ---------------------------------------------------------------- data


def _required_files(data_dir: Path, name: str) -> list[Path]:
    if name == "banking77":
        return [data_dir / "banking77" / "train.csv", data_dir / "banking77" / "test.csv"]
    return [data_dir / "clinc150" / "data_full.json"]


def load_split(
    data_dir: Path, name: str, split: str, limit: int | None = None
) -> tuple[list[str], list[str]]:
    """(texts, labels) of ``split`` ("train" or "test"); ``limit`` takes an even sample."""
    if name == "banking77":
        with open(data_dir / "banking77" / f"{split}.csv", encoding="utf-8", newline="") as f:
            rows = [(r["text"], r["category"]) for r in csv.DictReader(f)]
    else:
        data = json.loads((data_dir / "clinc150" / "data_full.json").read_text("utf-8"))
        # In-scope only; the official validation split joins the training data.
        parts = ["train", "val"] if split == "train" else ["test"]
        rows = [(t, lab) for part in parts for t, lab in data[part]]
    if limit is not None:
        rows = rows[:: max(1, len(rows) // limit)][:limit]
    return [t for t, _ in rows], [lab for _, lab in rows]


# ---------------------------------------------------------------- workers (subprocesses)


def _peak_rss_mb() -> float:
    from slmstack.evaluation.speed import peak_rss_mb

    return peak_rss_mb()


def _train(spec: dict[str, Any]) -> dict[str, Any]:
    texts, labels = load_split(Path(spec["data_dir"]), spec["dataset"], "train", spec["limit"])
    out = Path(spec["artifact"])
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    if spec["system"] == "baseline":
        import numpy as np
        from sentence_transformers import SentenceTransformer
        from sklearn.linear_model import LogisticRegression

        from slmstack.models.resolve import resolve

        model = SentenceTransformer(str(resolve(spec["base"]).path), device="cpu")
        x = model.encode(texts)
        clf = LogisticRegression(C=BASELINE_C, max_iter=1000).fit(x, labels)
        seconds = time.perf_counter() - start
        out.mkdir(parents=True, exist_ok=True)
        # npz of plain arrays (no pickles), so the serving process can rebuild the model.
        np.savez(
            out / "baseline.npz",
            coef=clf.coef_,
            intercept=clf.intercept_,
            classes=np.array(clf.classes_, dtype=str),
        )
    else:
        from slmstack.skills.classifier import TextClassifier
        from slmstack.types import Example

        examples = [Example(t, lab) for t, lab in zip(texts, labels, strict=True)]
        params = {"base": spec["base"], "strategy": spec["system"], **spec["params"]}
        skill = TextClassifier(**params).fit(examples)
        seconds = time.perf_counter() - start
        skill.save(out)
        extra = {
            "best_epoch": skill.best_epoch_,
            "history": skill.history_,
            "val_metrics": skill.metrics_,
            "params": {k: v for k, v in skill.get_params().items() if k != "allow_pickle"},
        }
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "train_seconds": seconds,
        # Includes the start-up imports, which cost the same for every system.
        "train_cpu_seconds": usage.ru_utime + usage.ru_stime,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "train_peak_rss_mb": _peak_rss_mb(),
        **extra,
    }


def _serve(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from slmstack.evaluation.metrics import classification_metrics
    from slmstack.evaluation.speed import measure_speed
    from slmstack.training.calibration import expected_calibration_error

    texts, labels = load_split(Path(spec["data_dir"]), spec["dataset"], "test", spec["limit"])
    folder = Path(spec["artifact"])
    start = time.perf_counter()
    if spec["system"] == "baseline":
        from sentence_transformers import SentenceTransformer
        from sklearn.linear_model import LogisticRegression

        from slmstack.models.resolve import resolve

        arrays = np.load(folder / "baseline.npz", allow_pickle=False)
        model = SentenceTransformer(str(resolve(spec["base"]).path), device="cpu")
        clf = LogisticRegression(C=BASELINE_C)
        clf.coef_, clf.intercept_ = arrays["coef"], arrays["intercept"]
        clf.classes_ = arrays["classes"]

        def predict(batch: list[str]) -> list[str]:
            return [str(y) for y in clf.predict(model.encode(batch))]

        classes = [str(c) for c in clf.classes_]
        load_seconds = time.perf_counter() - start
        probs = clf.predict_proba(model.encode(texts))
    else:
        from slmstack.skills.classifier import TextClassifier

        skill = TextClassifier.load(folder)
        load_seconds = time.perf_counter() - start

        def predict(batch: list[str]) -> list[str]:
            return [p.label or "" for p in skill.predict(batch)]

        classes = list(skill.classes_)
        probs = skill.predict_proba(texts)
    pred = [classes[int(i)] for i in probs.argmax(axis=1)]
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index.get(lab, -1) for lab in labels], dtype=np.int64)
    report = classification_metrics(labels, pred)
    speed = measure_speed(predict, texts, single_queries=spec["single_queries"])
    return {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "test_ece": expected_calibration_error(probs, y),
        "load_seconds": load_seconds,
        "latency_p50_ms": speed["latency_p50_ms"],
        "latency_p95_ms": speed["latency_p95_ms"],
        "throughput_per_s": speed["throughput_per_s"],
        "serve_peak_rss_mb": _peak_rss_mb(),
        "n_test": len(texts),
    }


def _worker(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    result = _train(spec) if spec["phase"] == "train" else _serve(spec)
    Path(spec["result"]).write_text(json.dumps(result))


def _run_phase(spec: dict[str, Any], tmp: Path, log: Path | None) -> dict[str, Any]:
    name = f"{spec['dataset']}-{spec['system']}-{spec['phase']}"
    spec = {**spec, "result": str(tmp / f"{name}.json")}
    spec_path = tmp / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "SLMSTACK_PROGRESS": os.environ.get("SLMSTACK_PROGRESS", "0")}
    with open(log or os.devnull, "a") as sink:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", str(spec_path)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if proc.returncode != 0:
        where = f"; see {log}" if log else "; rerun with --log FILE to see why"
        raise SystemExit(f"{name} failed with exit code {proc.returncode}{where}")
    result: dict[str, Any] = json.loads(Path(spec["result"]).read_text())
    return result


# ---------------------------------------------------------------- report


# ---------------------------------------------------------------- main


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    p.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    p.add_argument("--base", default="minilm", help="base model of every system")
    p.add_argument("--epochs", type=int, default=None, help="finetune: max epochs")
    p.add_argument("--lr", type=float, default=None, help="finetune: encoder learning rate")
    p.add_argument("--head-lr", type=float, default=None, help="finetune: head learning rate")
    p.add_argument("--label-smoothing", type=float, default=None, help="finetune")
    p.add_argument("--val-fraction", type=float, default=None)
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None)
    p.add_argument("--head-precision", choices=("fp32", "bf16"), default=None)
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="smoke test: an even sample of N train and N test rows (N >= 8 per label)",
    )
    p.add_argument("--single-queries", type=int, default=100, help="queries timed one by one")
    p.add_argument("--json", type=Path, help="also write every measurement here")
    p.add_argument("--log", type=Path, help="append the workers' output here")
    p.add_argument("--write-results", action="store_true", help="update bench/RESULTS.md")
    return p.parse_args()


def _params(args: argparse.Namespace, system: str) -> dict[str, Any]:
    from slmstack.skills.classifier import TextClassifier

    params: dict[str, Any] = {}
    if system == "finetune":
        for key, value in (
            ("epochs", args.epochs),
            ("learning_rate", args.lr),
            ("head_learning_rate", args.head_lr),
            ("label_smoothing", args.label_smoothing),
            ("precision", args.precision),
        ):
            if value is not None:
                params[key] = value
    if system == "head" and args.head_precision is not None:
        params["precision"] = args.head_precision
    if args.val_fraction is not None:
        params["val_fraction"] = args.val_fraction
    return {**TextClassifier().get_params(), **params, "base": args.base, "strategy": system}


def main() -> None:
    args = _parse()
    if args.worker is not None:
        _worker(args.worker)
        return
    missing = [
        p for d in args.datasets for p in _required_files(args.data_dir, d) if not p.exists()
    ]
    if missing:
        shown = "\n  ".join(str(p) for p in missing)
        raise SystemExit(
            f"missing benchmark data:\n  {shown}\nThe public data sets live in "
            "../shared/datasets (see its README); pass --data-dir to point elsewhere."
        )
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="slmstack-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for dataset in args.datasets:
            for system in args.systems:
                params = _params(args, system) if system != "baseline" else {}
                spec = {
                    "dataset": dataset,
                    "system": system,
                    "base": args.base,
                    "params": {k: v for k, v in params.items() if k not in ("base", "strategy")},
                    "data_dir": str(args.data_dir),
                    "artifact": str(tmp / f"{dataset}-{system}"),
                    "single_queries": args.single_queries,
                    "limit": args.limit,
                }
                trained = _run_phase({**spec, "phase": "train"}, tmp, args.log)
                served = _run_phase({**spec, "phase": "serve"}, tmp, args.log)
                row = {"dataset": dataset, "system": system, **trained, **served}
                row["label"] = _label(system, {**params, **trained})
                results.append(row)
                print(
                    f"{dataset:10s} {row['label']:60s} acc {100 * row['accuracy']:.2f}  "
                    f"F1 {100 * row['macro_f1']:.2f}  train {row['train_seconds']:.0f} s  "
                    f"p50 {row['latency_p50_ms']:.1f} ms  {row['throughput_per_s']:.0f}/s",
                    flush=True,
                )
                # Saved after every system, so a long run that is stopped keeps what it
                # measured (the table says which systems were not reached).
                _save(args, results, pending=len(args.systems) - args.systems.index(system) - 1)
    for dataset in args.datasets:
        print(f"\n{dataset}\n" + _table([r for r in results if r["dataset"] == dataset]))


def _save(args: argparse.Namespace, results: list[dict[str, Any]], *, pending: int) -> None:
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if not args.write_results or args.limit is not None:
        return
    command = " ".join(["python", "bench/classify.py", *sys.argv[1:]])
    dataset = results[-1]["dataset"]
    rows = [r for r in results if r["dataset"] == dataset]
    note = f"\n(run in progress: {pending} more system(s) to come)\n" if pending else ""
    write_results({dataset: _block(dataset, rows, command) + note})


def _block(dataset: str, results: list[dict[str, Any]], command: str) -> str:
    import platform

    import torch

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    loads = [r[k] for r in results for k in ("load_before", "load_after")]
    return (
        f"### {dataset}\n\n"
        f"Measured {when}: {os.cpu_count()} CPU cores ({platform.machine()}), torch "
        f"{torch.__version__} with {torch.get_num_threads()} threads, "
        f"{results[0]['n_test']} test texts; 1-minute load average during training "
        f"{min(loads):.1f}–{max(loads):.1f} (2.0 = both cores busy).\n\n"
        f"{_table(results)}\n"
        "Command (from the repository root, holding the shared CPU lock):\n\n"
        "```\n"
        "HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 flock /tmp/slmstack-cpu.lock "
        f".venv/bin/{command}\n"
        "```\n"
    )


if __name__ == "__main__":
    main()
