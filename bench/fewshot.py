"""Few-shot BANKING77: ``TextClassifier(strategy="fewshot")`` against frozen MiniLM + LR.

Data: ``../shared/datasets/banking77`` (train.csv / test.csv). For ``k`` in 5, 10, 20
examples per intent and draws ``0, 1, 2``, draw ``d`` takes, for each intent, the first
``k`` texts of a permutation of its training texts seeded by ``d`` (so the 5-shot set of a
draw is inside its 10-shot set, and that inside the 20-shot set). Both systems train on
exactly those ``k * 77`` texts; the 3,080 test texts are scored once per run.

Systems, in the same run (the first two on the same all-MiniLM-L6-v2 weights):

* ``baseline``: ``SentenceTransformer(folder).encode`` + sklearn
  ``LogisticRegression(C=10)`` on all ``k`` examples (what a user writes by hand);
* ``fewshot``: ``TextClassifier(strategy="fewshot")`` (SetFit's contrastive tuning, then
  the logistic-regression head; the skill holds one example per intent out of the
  encoder's training to stop it, then fits the head on all ``k``);
* ``head_mpnet``: ``TextClassifier(strategy="head", base="mpnet")``, the frozen larger
  encoder through the product (it calibrates on a held-out tenth, at least one per
  intent, then refits its head on all ``k``), for each parameter set of ``--head-grid``
  (``head_c``; ``name_examples``: each intent's name as one more example).

Protocol: the fewshot hyper-parameters (learning rate, pair iterations, epochs) and
the parameters of ``head_mpnet`` are chosen on a *validation sample drawn from train*:
``--val-per-label`` texts per intent from the training texts outside the draw (seed
1000), never the test split. The grid runs on draw 0 of the 10-shot set only (CPU time);
every configuration is listed with its validation accuracy, and the test split is scored
only for the chosen one.

Run (heavy: it takes the shared CPU lock itself, per run, or hold it for the whole run
with ``flock`` and ``--no-lock``; results are saved after each run and a rerun skips
what ``--out`` already holds)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 flock /tmp/slmstack-cpu.lock \
        .venv/bin/python bench/fewshot.py --no-lock --write-results
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import cpu_lock, machine, replace_section

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "banking77"
OUT = REPO / "bench" / "results" / "fewshot.json"
RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = "## Few-shot BANKING77: 5, 10, 20 examples per intent (`bench/fewshot.py`)"
BASELINE_C = 10.0
VAL_SEED = 1000
# SetFit's own pairs at its default learning rate, and all pairs inside a batch (two
# passes of 32 texts cost about half of one pass of 32 sampled pairs) at a higher rate
# (a few hundred steps instead of SetFit's thousands). Two configurations: the CPU is shared.
GRID: list[dict[str, Any]] = [
    {"pairing": "sampled", "pair_iterations": 1, "pair_learning_rate": 2e-5},
    {"pairing": "in_batch", "pair_iterations": 2, "pair_learning_rate": 1e-4},
]
# The probe's inverse L2 strength for `head` on mpnet: the default (10) first, so it wins ties.
# Last, each label's name as one more example (`name_examples`, added 2026-12-04 after
# bench/fewshot_explore/label_names.py, validation only).
HEAD_GRID: list[dict[str, Any]] = [{"head_c": 10.0}, {"head_c": 1.0}, {"head_c": 100.0},
                                   {"head_c": 10.0, "name_examples": True}]  # fmt: skip


def read(split: str) -> tuple[list[str], list[str]]:
    """(texts, labels) of BANKING77 ``split``."""
    with open(DATA / f"{split}.csv", encoding="utf-8", newline="") as f:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(f)]
    return [t for t, _ in rows], [lab for _, lab in rows]


def draw(
    texts: list[str], labels: list[str], k: int, seed: int, val_per_label: int
) -> tuple[list[int], list[int]]:
    """Indices of ``k`` training examples per label (draw ``seed``) and a validation sample.

    The validation sample takes ``val_per_label`` per label from the texts outside the
    20-shot set of the draw, so it never overlaps any training set of that draw.
    """
    import numpy as np

    groups: dict[str, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        groups[lab].append(i)
    train: list[int] = []
    val: list[int] = []
    val_rng = np.random.default_rng(VAL_SEED + seed)
    for lab in sorted(groups):
        order = np.random.default_rng(seed).permutation(groups[lab]).tolist()
        train.extend(order[:k])
        rest = order[20:]
        val.extend(val_rng.choice(rest, size=val_per_label, replace=False).tolist())
    return train, val


class Frozen:
    """Frozen MiniLM sentence vectors, computed once per text and cached."""

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        from slmstack.models.resolve import resolve

        self.model = SentenceTransformer(str(resolve("minilm").path), device="cpu")
        self.cache: dict[str, Any] = {}

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        todo = sorted({t for t in texts if t not in self.cache})
        if todo:
            for t, v in zip(todo, self.model.encode(todo, batch_size=64), strict=True):
                self.cache[t] = v
        return np.stack([self.cache[t] for t in texts])


def baseline(frozen: Frozen, xs: list[str], ys: list[str], evals: dict[str, list[str]],
             gold: dict[str, list[str]]) -> dict[str, Any]:  # fmt: skip
    """Frozen MiniLM + LogisticRegression(C=10): accuracy on each evaluation set."""
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    clf = LogisticRegression(C=BASELINE_C, max_iter=1000).fit(frozen.encode(xs), ys)
    seconds = time.perf_counter() - start
    out: dict[str, Any] = {"train_seconds": round(seconds, 1)}
    for name, texts in evals.items():
        pred = clf.predict(frozen.encode(texts))
        out[f"{name}_accuracy"] = float((pred == gold[name]).mean() * 100)
    return out


def fewshot(
    xs: list[str],
    ys: list[str],
    evals: dict[str, list[str]],
    gold: dict[str, list[str]],
    cfg: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Train ``TextClassifier(**{"strategy": "fewshot", **cfg})``; accuracy on each set."""
    import numpy as np

    from slmstack.skills.classifier import TextClassifier
    from slmstack.types import Example

    examples = [Example(t, y) for t, y in zip(xs, ys, strict=True)]
    start = time.perf_counter()
    params = {"strategy": "fewshot", "scope_alpha": 0.0, "seed": seed, **cfg}
    skill = TextClassifier(**params).fit(examples)
    seconds = time.perf_counter() - start
    out: dict[str, Any] = {
        "train_seconds": round(seconds, 1),
        "best_epoch": skill.best_epoch_,
        "history": skill.history_,
        "skill_metrics": skill.metrics_,
    }
    for name, texts in evals.items():
        pred = np.asarray(skill.classes_)[skill.predict_proba(texts).argmax(axis=1)]
        out[f"{name}_accuracy"] = float((pred == np.asarray(gold[name])).mean() * 100)
    return out


def _key(row: dict[str, Any]) -> str:
    return json.dumps({k: row[k] for k in ("phase", "system", "shots", "draw", "config")},
                      sort_keys=True)  # fmt: skip


def _summary(runs: list[dict[str, Any]], chosen: dict[str, Any] | None) -> dict[str, Any]:
    """Test accuracy per size and system. A configuration chosen before, under an older
    grid, is kept apart from the chosen one: ``"<system> <config>"``."""
    out: dict[str, Any] = {}
    for row in runs:
        if row["phase"] != "test":
            continue
        system = row["system"]
        raw = chosen.get("raw", row["config"]) if chosen else row["config"]
        if chosen and system == chosen["system"] and row["config"] != raw:
            system = f"{system} {json.dumps(row['config'])}"
        out.setdefault(str(row["shots"]), {}).setdefault(system, []).append(row["test_accuracy"])
    return {
        shots: {
            system: {
                "mean": round(statistics.mean(v), 2),
                "sd": round(statistics.stdev(v), 2) if len(v) > 1 else 0.0,
                "draws": len(v),
                "values": [round(x, 2) for x in v],
            }
            for system, v in systems.items()
        }
        for shots, systems in sorted(out.items(), key=lambda kv: int(kv[0]))
    }


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20])
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--val-per-label", type=int, default=5)
    p.add_argument("--grid", type=json.loads, default=GRID,
                   help="JSON list of TextClassifier parameter sets to choose from")  # fmt: skip
    p.add_argument("--head-grid", type=json.loads, default=HEAD_GRID,
                   help="JSON list of parameter sets for head on mpnet")  # fmt: skip
    p.add_argument("--epochs", type=int, default=2, help="maximum epochs (best one kept)")
    p.add_argument("--precision", default="fp32", help="fp32, bf16 or auto")
    p.add_argument("--grid-only", action="store_true", help="stop after the validation grid")
    p.add_argument("--no-lock", action="store_true",
                   help="skip the per-run lock (the caller holds it)")  # fmt: skip
    p.add_argument("--report-only", action="store_true",
                   help="run nothing; summarise what --out holds")  # fmt: skip
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--write-results", action="store_true", help="append to bench/RESULTS.md")
    return p.parse_args()


def main() -> None:
    args = _parse()
    data = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    if args.report_only:
        data["summary"] = _summary(data["runs"], data.get("chosen"))
        args.out.write_text(json.dumps(data, indent=1) + "\n")
        print(json.dumps(data["summary"], indent=1))
        if args.write_results:
            write_results(data, data["command"])
        return
    done = {_key(r): r for r in data["runs"]}
    tr_x, tr_y = read("train")
    te_x, te_y = read("test")
    frozen = Frozen()
    fixed = {"epochs": args.epochs, "patience": args.epochs, "precision": args.precision}

    def run(
        phase: str, system: str, shots: int, seed: int, config: dict[str, Any]
    ) -> dict[str, Any]:
        row = {"phase": phase, "system": system, "shots": shots, "draw": seed, "config": config}
        if _key(row) in done:
            return done[_key(row)]
        train, val = draw(tr_x, tr_y, shots, seed, args.val_per_label)
        xs, ys = [tr_x[i] for i in train], [tr_y[i] for i in train]
        evals = {"val": [tr_x[i] for i in val]} if phase == "grid" else {"test": te_x}
        gold = {"val": [tr_y[i] for i in val]} if phase == "grid" else {"test": te_y}
        with nullcontext(0.0) if args.no_lock else cpu_lock() as waited:
            load = os.getloadavg()[0]
            if system == "baseline":
                row.update(baseline(frozen, xs, ys, evals, gold))
            elif system == "head_mpnet":  # the frozen larger encoder, through the product
                params = {"strategy": "head", "base": "mpnet", "precision": args.precision,
                          **config}  # fmt: skip
                row.update(fewshot(xs, ys, evals, gold, params, seed))
            else:
                row.update(fewshot(xs, ys, evals, gold, {**fixed, **config}, seed))
        row.update(lock_wait_s=round(waited, 1), load_before=round(load, 2))
        data["runs"].append(row)
        done[_key(row)] = row
        _save(args, data)
        shown = {k: v for k, v in row.items() if k.endswith("accuracy") or k == "train_seconds"}
        print(phase, system, shots, seed, config, shown, flush=True)
        return row

    # 1. The grid, on validation data only (draw 0, 10 per intent).
    grid: list[dict[str, Any]] = args.grid
    run("grid", "baseline", 10, 0, {})
    # Candidates: the fewshot configurations, and `head` on the frozen mpnet encoder.
    candidates = [("fewshot", cfg) for cfg in grid] + [("head_mpnet", c) for c in args.head_grid]
    scored = [(run("grid", name, 10, 0, cfg)["val_accuracy"], -i)
              for i, (name, cfg) in enumerate(candidates)]  # fmt: skip
    system, chosen = candidates[-max(scored)[1]]
    shown = {**fixed, **chosen} if system == "fewshot" else {
        "strategy": "head", "base": "mpnet", "precision": args.precision, **chosen}  # fmt: skip
    data["chosen"] = {"system": system, "config": shown, "raw": chosen,
                      "by": "validation accuracy, draw 0, 10-shot"}  # fmt: skip
    _save(args, data)
    if args.grid_only:
        return
    # 2. Test, once per draw and size, for the chosen configuration and the baseline.
    # Draw by draw, so that an interrupted run still has every size for the first draws.
    for seed in range(args.draws):
        for shots in args.shots:
            run("test", "baseline", shots, seed, {})
            run("test", system, shots, seed, chosen)
    data["summary"] = _summary(data["runs"], data.get("chosen"))
    _save(args, data)
    print(json.dumps(data["summary"], indent=1))
    if args.write_results:
        write_results(data, " ".join(["python", "bench/fewshot.py", *sys.argv[1:]]))


def _save(args: argparse.Namespace, data: dict[str, Any]) -> None:
    data["machine"] = machine()
    data["command"] = " ".join(["python", "bench/fewshot.py", *sys.argv[1:]])
    data["protocol"] = (
        "hyper-parameters chosen on a validation sample drawn from train (never test); "
        "test scored once per draw for the chosen configuration"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")


def _cell(stats: dict[str, Any] | None) -> str:
    if stats is None:
        return "not run"
    values = ", ".join(f"{v:.2f}" for v in stats["values"])
    if stats["draws"] == 1:
        return f"{values} (1 draw)"
    return f"{stats['mean']:.2f} ± {stats['sd']:.2f} ({values})"


def write_results(data: dict[str, Any], command: str, path: Path = RESULTS) -> None:
    """Append (or replace) this benchmark's section at the end of bench/RESULTS.md."""
    m = data["machine"]
    lines = [SECTION, "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {m['model_name']} "
             f"({m['cpu_count']} cores, {m['cpu_flags']}); the cores were shared with other "
             "jobs, so seconds are indicative only. Result file: `bench/results/fewshot.json`.",
             "", "Test accuracy (%), mean ± sd over the draws of the examples (each draw's "
             "value in brackets):", "",
             "| examples per intent | frozen MiniLM + LR (baseline) | fewshot (SetFit method) "
             "| `head` on frozen mpnet (chosen) |"]  # fmt: skip
    earlier = sorted({s for systems in data["summary"].values() for s in systems}
                     - {"baseline", "fewshot", "head_mpnet"})  # fmt: skip
    lines[-1] += "".join(f" {s.replace('head_mpnet', '`head` on mpnet')} (chosen before) |"
                         for s in earlier)  # fmt: skip
    lines.append("|---" * (4 + len(earlier)) + "|")
    for shots, systems in data["summary"].items():
        cells = [_cell(systems.get(s)) for s in ("baseline", "fewshot", "head_mpnet", *earlier)]
        lines.append(f"| {shots} | " + " | ".join(cells) + " |")
    lines += ["", f"Chosen on {data['chosen']['by']} (a validation sample of "
              "5 texts per intent drawn from train, outside the draw): "
              f"`{json.dumps(data['chosen']['config'])}`. Every configuration tried:", "",
              "| configuration | validation accuracy |", "|---|---|"]  # fmt: skip
    for row in data["runs"]:
        if row["phase"] == "grid":
            names = {"baseline": "frozen MiniLM + LR (baseline)",
                     "head_mpnet": '`TextClassifier(strategy="head", base="mpnet")`'}  # fmt: skip
            name = names.get(row["system"], "fewshot")
            if row["config"]:
                name += f" {json.dumps(row['config'])}"
            lines.append(f"| {name} | {row['val_accuracy']:.2f} |")
    lock = "flock /tmp/slmstack-cpu.lock " if "--no-lock" in command else ""
    lines += ["", "Command (from the repository root):", "", "```",
              f"HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 {lock}.venv/bin/{command}",
              "```", ""]  # fmt: skip
    replace_section(path, SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
