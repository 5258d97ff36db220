"""Distillation from a local LLM teacher on CLINC150: agreement, gold accuracy and cost.

The setting is the one distillation is for: a team has a few labelled examples (the
SEED set, 3 per intent from the CLINC150 training split), many unlabelled texts (the
POOL, N further training texts whose gold labels are hidden from every system trained on
teacher labels) and an LLM. The teacher is Qwen2.5-Coder-1.5B-Instruct (GGUF, Q4_K_M),
served by llama-cpp-python's OpenAI-compatible server (niced) and reached through
``LLMClassifier(runtime="openai")``: the 150 intents in the system prompt (658 Qwen
tokens, so CLINC150 fits the 4,096-token window with any ``k`` tried here), the ``k``
seed examples nearest to the text (MiniLM cosine) as earlier chat turns, the answer
constrained to the labels, one greedy call per text (``confidence_method="greedy"``:
no log-probabilities, which cost about half of each call on llama-cpp-python, so the
student is not confidence-weighted). ``k`` is chosen on a VALIDATION sample of further
training texts (never the test split).

Labels go through :class:`slmstack.distill.TeacherCache` (``bench/out/distill/``), each
costed by a :class:`~slmstack.workflows.metering.Meter` that prices the served model by
its wall time on the price table's ``cpu-2vcpu`` machine; the same calls are also priced
at GPT-4's list prices from their measured tokens. ``slmstack.distill.distill`` then
trains the student (``TextClassifier(strategy="head")``, MiniLM) on the teacher's labels
of 80 % of the pool, plus the seed set's gold labels (see :class:`SeededStudent`), and
measures its agreement with the teacher on the other 20 %.

Peers, in the same run, all scored on one fixed-seed test sample: the same student kind
trained on the seed set plus the GOLD labels of exactly the same pool texts; the seed
set alone (what the team has without an LLM); the teacher's retriever alone (nearest
seed example); the teacher itself (on a smaller test subsample, for time); the majority
class.

CPU etiquette on the shared 2-core machine: the script waits until no other
``llama_cpp.server`` for the same model runs, labels niced and without the shared CPU
lock, and takes the lock only to train and score the students. A crash resumes from the
cache without buying labels again; a smaller N reuses the labels of a larger one.

Files: this one trains the students and runs the whole; ``_distill_common.py`` holds
the settings and data helpers, ``_distill_teacher.py`` the served teacher and its cached
labels, ``_distill_report.py`` the costs and the RESULTS.md section.

Run (from the repository root; the script takes the lock itself)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0 \\
        .venv/bin/python bench/distill.py --n-pool 400 --write-results

and first end to end on a tiny configuration (SmolLM2-135M as the teacher)::

    .venv/bin/python bench/distill.py --tiny
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _distill_common import (
    JSON_OUT,
    MACHINE,
    REPO,
    read_clinc,
    split,
    wait_for_other_server,
)
from _distill_report import (
    costs,
    write_section,
)
from _distill_teacher import (
    Teacher,
    teacher_summary,
)
from _machine import cpu_lock, machine


# ---------------------------------------------------------------- the students (locked)
def train_student(name: str, examples: list[Any], test_texts: list[str]) -> dict[str, Any]:
    from slmstack.skills.classifier import TextClassifier

    print(f"training {name} on {len(examples)} texts", flush=True)
    load0, cpu0, start = os.getloadavg()[0], time.process_time(), time.perf_counter()
    skill = TextClassifier(strategy="head").fit(examples)
    info = fit_info(start, cpu0, load0, len(examples))
    return {**info, "pred": [p.label for p in skill.predict(test_texts)]}


def fit_info(start: float, cpu0: float, load0: float, n: int) -> dict[str, Any]:
    return {"n_train": n, "train_s": time.perf_counter() - start,
            "train_cpu_s": time.process_time() - cpu0,
            "load1": [load0, os.getloadavg()[0]]}  # fmt: skip


class SeededStudent:
    """A student trained on the seed set's gold labels plus the examples ``fit`` is given.

    ``distill()`` trains its student on teacher labels alone; with 150 intents and a
    pool of a few hundred texts, many intents get one teacher label or none, which
    ``TextClassifier`` rejects (it needs two per label) and could never predict. The team
    in this setting has the seed set anyway (the teacher's demonstrations), so the
    student learns from both, as its gold-label peer does.
    """

    def __init__(self, skill: Any, seed: list[Any]):
        self.skill, self.seed, self.info = skill, seed, {}

    def fit(self, examples: list[Any]) -> SeededStudent:
        load0, cpu0, start = os.getloadavg()[0], time.process_time(), time.perf_counter()
        print(f"training teacher student on {len(self.seed)} + {len(examples)} texts", flush=True)
        self.skill.fit(self.seed + list(examples))
        self.info = fit_info(start, cpu0, load0, len(self.seed) + len(examples))
        return self

    def predict(self, texts: list[str]) -> list[Any]:
        return self.skill.predict(texts)  # type: ignore[no-any-return]


def accuracy(pred: list[str | None], gold: list[str]) -> float:
    return sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold)


def agreement(a: list[str | None], b: list[str | None]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def label_log(out: Path) -> dict[str, dict[str, float]]:
    """Wall and server CPU seconds of every labelling batch, summed per (part, k)."""
    sums: dict[str, dict[str, float]] = {}
    path = out / "label-log.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        rec = json.loads(line)
        s = sums.setdefault(f"{rec['what']}|k{rec['k']}", {"n": 0, "wall_s": 0.0,
                                                             "server_cpu_s": 0.0})  # fmt: skip
        s["n"] += rec["n"]
        s["wall_s"] += rec["wall_s"]
        s["server_cpu_s"] += rec["server_cpu_s"]
    return sums


def pool_budget(teacher: Teacher, k: int, val: dict[str, Any], pool_t: list[str],
                sub_t: list[str], args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """How many pool texts to label: all asked for, or what the time budget still buys.

    The clock starts when our server first answered; the teacher's seconds per label are
    those measured on validation with the chosen ``k``; the teacher's test subset is
    reserved first. Labels already cached are free, so the pool never shrinks below its
    cached prefix (the pool is a prefix of one fixed order).
    """
    per_label = val["local_seconds"] / val["n"]
    prefix = 0
    while prefix < len(pool_t) and teacher.missing(k, pool_t[prefix : prefix + 1]) == 0:
        prefix += 1
    start = teacher.ready_at if teacher.ready_at is not None else time.monotonic()
    left = start + 60 * args.budget_min - time.monotonic()
    test_s = teacher.missing(k, sub_t) * per_label
    affordable = max(0, int((left - test_s) / per_label))
    n = min(len(pool_t), max(prefix + affordable, args.min_pool))
    print(f"pool: {n} of {len(pool_t)} asked for ({prefix} cached; {per_label:.1f} s per label, "
          f"{left / 60:.0f} min of the {args.budget_min:g}-min budget left)",
          flush=True)  # fmt: skip
    return {"n": n, "asked": len(pool_t), "cached_prefix": prefix,
            "seconds_per_label_validation": per_label, "budget_min": args.budget_min,
            "budget_left_s": left, "reserved_for_teacher_test_s": test_s}  # fmt: skip


# ---------------------------------------------------------------- main
def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-1.5b")
    ap.add_argument("--seed-per-label", type=int, default=3)
    ap.add_argument("--n-pool", type=int, default=600, help="pool texts asked for")
    ap.add_argument(
        "--budget-min",
        type=float,
        default=60.0,
        help="labelling time from our server's start; the pool shrinks to fit",
    )
    ap.add_argument("--min-pool", type=int, default=100, help="the pool never shrinks below")
    ap.add_argument("--n-val", type=int, default=40)
    ap.add_argument("--ks", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--n-teacher-test", type=int, default=150)
    ap.add_argument("--held-out", type=float, default=0.2)
    ap.add_argument("--batch", type=int, default=8, help="labels bought per cache flush")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", type=Path, default=REPO / "bench" / "out" / "distill")
    ap.add_argument(
        "--tiny",
        action="store_true",
        help="end-to-end check: smollm2 teacher, 20 pool texts, nothing written",
    )
    ap.add_argument(
        "--write-results",
        action="store_true",
        help="write bench/results/distill.json and the bench/RESULTS.md section",
    )
    args = ap.parse_args()
    if args.tiny:
        args.model, args.n_pool, args.n_val, args.ks = "smollm2", 20, 6, [2, 4]
        args.min_pool = 20
        args.n_test, args.n_teacher_test, args.write_results = 40, 10, False
        args.out_dir = REPO / "bench" / "out" / "distill-tiny"
    return args


def main() -> None:
    from slmstack.types import Example

    args = parse()
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    train, test = read_clinc()
    idx = split(train, args)
    seed_ex = [Example(*train[i]) for i in idx["seed"]]
    val_t, val_g = [train[i][0] for i in idx["val"]], [train[i][1] for i in idx["val"]]
    pool_t, pool_g = [train[i][0] for i in idx["pool"]], [train[i][1] for i in idx["pool"]]
    order = random.Random(args.seed + 3).sample(range(len(test)), args.n_test)
    sample, t_sub = sorted(order), sorted(order[: args.n_teacher_test])
    test_t, test_g = [test[i][0] for i in sample], [test[i][1] for i in sample]
    sub_t, sub_g = [test[i][0] for i in t_sub], [test[i][1] for i in t_sub]
    pos = {i: n for n, i in enumerate(sample)}
    sub_pos = [pos[i] for i in t_sub]
    print(f"CLINC150 in-scope: {len({y for _, y in train})} labels, seed {len(seed_ex)}, "
          f"validation {len(val_t)}, pool {len(pool_t)}, test sample {len(sample)} "
          f"(teacher {len(t_sub)})", flush=True)  # fmt: skip

    # ------------------------------------------------ phase 1: the teacher (niced, no lock)
    nice0 = os.nice(0)
    os.nice(10)
    teacher = Teacher(args.model, seed_ex, out)
    waited = {"other_server_s": 0.0}
    start_server = teacher.ensure_server

    def ensure_server() -> None:  # wait for the other benchmark's server before ours
        if teacher.server is None and not args.tiny:
            waited["other_server_s"] += wait_for_other_server(args.model)
        start_server()

    teacher.ensure_server = ensure_server  # type: ignore[method-assign]
    phase1 = time.perf_counter()
    try:
        val = {k: teacher_summary(teacher.label("val", k, val_t, val_g, args.batch), val_g)
               for k in sorted(args.ks)}  # fmt: skip
        k = max(sorted(val), key=lambda c: val[c]["accuracy"])  # ties: the smaller k
        print(f"chosen on validation: k={k} "
              f"({ {c: round(v['accuracy'], 3) for c, v in val.items()} })",
              flush=True)  # fmt: skip
        budget = pool_budget(teacher, k, val[k], pool_t, sub_t, args)
        pool_t, pool_g, idx["pool"] = (
            pool_t[: budget["n"]],
            pool_g[: budget["n"]],
            idx["pool"][: budget["n"]],
        )
        pool_l = teacher.label("pool", k, pool_t, pool_g, args.batch)
        sub_l = teacher.label("test", k, sub_t, sub_g, args.batch)
    finally:
        teacher.stop()
    phase1_s = time.perf_counter() - phase1

    # ------------------------------------------------ phase 2: the students (locked)
    from slmstack.distill import distill
    from slmstack.skills.classifier import TextClassifier

    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice0)
    except PermissionError:
        print("could not restore the nice value; students train niced", flush=True)
    import torch

    torch.set_num_threads(2)
    students: dict[str, dict[str, Any]] = {}
    with cpu_lock() as lock_wait:
        student = SeededStudent(TextClassifier(strategy="head"), seed_ex)
        report = distill(teacher.clf, student, pool_t, cache=teacher.cache,  # type: ignore[arg-type]
                         identity=teacher.identity(k), cost_of=teacher.cost_of, gold=pool_g,
                         held_out=args.held_out, seed=args.seed)  # fmt: skip
        students["teacher"] = {**student.info, "pred": [p.label for p in student.predict(test_t)]}
        # The pool texts distill trained on: its own fixed-seed split, less abstentions.
        order_p = list(range(len(pool_t)))
        random.Random(args.seed).shuffle(order_p)
        n_held = max(1, round(args.held_out * len(pool_t)))
        kept = [i for i in sorted(order_p[n_held:]) if pool_l[i].label is not None]
        assert len(kept) == report.train_texts, (len(kept), report.train_texts)
        students["gold"] = train_student(
            "gold", seed_ex + [Example(pool_t[i], pool_g[i]) for i in kept], test_t)  # fmt: skip
        students["seed"] = train_student("seed", seed_ex, test_t)
        one_nn = [teacher.clf.pool_.answers[ix[0]] for ix in teacher.clf.pool_.nearest(test_t, 1)]
    majority = sorted(Counter([e.label for e in seed_ex] + pool_g).most_common(),
                      key=lambda kv: (-kv[1], kv[0]))[0][0]  # fmt: skip

    teacher_sub = [lab.label for lab in sub_l]
    for s in students.values():
        s["accuracy"] = accuracy(s["pred"], test_g)
        s["accuracy_teacher_subset"] = accuracy([s["pred"][j] for j in sub_pos], sub_g)
        s["agreement_teacher_subset"] = agreement([s["pred"][j] for j in sub_pos], teacher_sub)
    from slmstack.costs.prices import load_prices

    per_hour = load_prices().machine(MACHINE).per_hour
    result = {
        "meta": {
            "started": started.strftime("%Y-%m-%d %H:%M UTC"),
            "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join(["HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0",
                                 ".venv/bin/python", *sys.argv]),
            "args": {k_: str(v) if isinstance(v, Path) else v for k_, v in vars(args).items()},
            "machine": machine(), "load_avg_end": os.getloadavg(),
            "dataset": "CLINC150 in-scope (data_full.json)", "n_labels": len(set(pool_g) | {
                e.label for e in seed_ex}),
            "teacher_model": args.model, "student": "TextClassifier(strategy='head'), MiniLM",
            "teacher_fit_s": teacher.fit_s, "phase1_s": phase1_s, "pool_budget": budget,
            "waited_for_other_server_s": waited["other_server_s"], "lock_wait_s": lock_wait,
            "label_log": label_log(out), "price_machine": MACHINE,
            "machine_per_hour_usd": str(per_hour),
        },
        "sizes": {"seed": len(seed_ex), "validation": len(val_t), "pool": len(pool_t),
                  "test_sample": len(sample), "teacher_test_subset": len(t_sub)},
        "indices": {"seed": idx["seed"], "validation": idx["val"], "pool": idx["pool"],
                    "test_sample": sample, "teacher_test_subset": t_sub},
        "validation": {f"k{c}": v for c, v in val.items()}, "chosen": {"k": k},
        "teacher": {"pool": teacher_summary(pool_l, pool_g),
                    "test_subset": teacher_summary(sub_l, sub_g)},
        "distill_report": report.to_json(),
        "students": {n: {k_: v for k_, v in s.items() if k_ != "pred"}
                     for n, s in students.items()},
        "baselines": {"majority": {"label": majority,
                                   "accuracy": accuracy([majority] * len(test_g), test_g)},
                      "seed_1nn": {"accuracy": accuracy(one_nn, test_g),  # type: ignore[arg-type]
                                   "accuracy_teacher_subset": accuracy(
                                       [one_nn[j] for j in sub_pos], sub_g)}},
        "predictions": {n: s["pred"] for n, s in students.items()} | {"teacher_subset":
                                                                         teacher_sub},
    }  # fmt: skip
    result["costs"] = costs(result, per_hour)
    text = json.dumps(result, indent=1, default=str)
    (out / "report.json").write_text(text)
    if args.write_results:
        JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
        JSON_OUT.write_text(text + "\n")
        write_section(result)
        print(f"wrote {JSON_OUT} and the bench/RESULTS.md section", flush=True)
    print(json.dumps({n: round(s["accuracy"], 4) for n, s in result["students"].items()}
                     | {"teacher_subset": result["teacher"]["test_subset"]["accuracy"]},
                     indent=1))  # fmt: skip
    print(json.dumps(result["costs"], indent=1, default=str))


if __name__ == "__main__":
    main()
