"""Fine-tuned SLM against a local stand-in "LLM" on BANKING77: accuracy, latency and money.

The "LLM" is Qwen2.5-Coder-1.5B-Instruct (GGUF, Q4_K_M), the largest local generative
model, served by llama-cpp-python's OpenAI-compatible server and reached through
``LLMClassifier(runtime="openai")``: the 77 labels (with descriptions) in the system
prompt, the ``k`` training examples nearest to the query (MiniLM cosine) as earlier chat
turns, most similar last, and the answer constrained by a JSON schema whose ``label`` is
an enum of the 77 labels, one greedy call per query (``confidence_method="greedy"``: no
log-probabilities, which llama-cpp-python computes over Qwen's 152k-token vocabulary in
Python, about half of each call's time in an earlier run). The prompt variant and ``k``
are chosen on a validation sample held out of the *training* set (and out of the
demonstration pool); the test sample is scored once, with the chosen setting.

The SLMs are ``TextClassifier(strategy="finetune")`` and ``TextClassifier(strategy="head")``
on all-MiniLM-L6-v2, trained on the full training set. Trivial baselines (majority class,
TF-IDF nearest neighbour) and the LLM's own top retrieved demonstration (embedding 1-NN)
are scored on the same test sample.

Costs per 1M requests, exact (``Decimal``), from the packaged price table: the LLM's
prompts at GPT-4's list prices (its measured tokens in and out, counted by Qwen's
tokenizer), and every system's measured wall time per query on the table's default
machine (``cpu-2vcpu``).

CPU etiquette on the shared 2-core machine: the LLM part (minutes to hours) runs niced
(``nice -n 10``) and *without* the shared CPU lock, so other jobs keep running (they slow
it; each answer records the load average and whether another job held the lock). The
SLM training and the SLM latency measurement take the lock, and so does a short check of
the LLM's own latency: the first ``--n-quiet`` test queries asked again while holding it,
so that both latencies are measured without other jobs' load. Every LLM answer is appended
to ``bench/out/llm_vs_slm/llm_answers.jsonl`` as it comes, and trained SLMs are saved
there, so an interrupted run resumes without asking or training again.

Files: this one trains and times the SLMs and runs the whole; ``_llm_vs_slm_common.py``
holds the settings, prompt variants and data helpers, ``_llm_vs_slm_llm.py`` the served LLM
and its checkpointed answers, ``_llm_vs_slm_report.py`` the report and its section.

Run (from the repository root; the script takes the lock itself)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0 \\
        .venv/bin/python bench/llm_vs_slm.py --write-results
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from _llm_vs_slm_common import (
    FINETUNE,
    HEAD,
    HOLDOUT,
    JSON_OUT,
    MODEL,
    OUT,
    PROMPTS,
    command_line,
    pct,
    read_split,
)
from _llm_vs_slm_llm import (
    Answers,
    LLMRun,
    llm_phase,
)
from _llm_vs_slm_report import (
    build_report,
    section,
    write_section,
)
from _machine import cpu_lock, machine


# ---------------------------------------------------------------- the SLMs (under the lock)
def trained_slm(name: str, params: dict[str, Any], examples: list[Any]) -> tuple[Any, dict]:
    """The SLM ``name`` saved under ``OUT`` (trained on ``examples`` first when missing).

    ``bench/speed.py`` takes its ``finetune`` skill from here too. The caller holds the lock.
    """
    from slmstack.skills.classifier import TextClassifier

    folder, info_file = OUT / name, OUT / f"{name}-train.json"
    if info_file.exists():
        return TextClassifier.load(folder), json.loads(info_file.read_text())
    print(f"training {name} {params} on {len(examples)} texts", flush=True)
    load0, cpu0 = os.getloadavg()[0], time.process_time()
    start = time.perf_counter()
    skill = TextClassifier(**params).fit(examples)
    info = {"train_s": time.perf_counter() - start, "train_cpu_s": time.process_time() - cpu0,
            "load_before": load0, "load_after": os.getloadavg()[0],
            "params": {k: v for k, v in skill.get_params().items() if k != "allow_pickle"},
            "best_epoch": skill.best_epoch_, "history": skill.history_,
            "val_metrics": skill.metrics_}  # fmt: skip
    skill.save(folder)
    info_file.write_text(json.dumps(info, indent=1))
    return skill, info


def slm_phase(train: list[tuple[str, str]], test: list[tuple[str, str]],
              sample: list[int]) -> dict[str, Any]:  # fmt: skip
    cache = OUT / "slm.json"
    if cache.exists():
        print(f"SLM results from {cache}", flush=True)
        return dict(json.loads(cache.read_text()))
    import torch

    from slmstack.types import Example

    torch.set_num_threads(2)
    examples = [Example(t, lab) for t, lab in train]
    texts = [t for t, _ in test]
    out: dict[str, Any] = {}
    with cpu_lock() as waited:
        out["lock_wait_s"] = waited
        for name, params in (("head", HEAD), ("finetune", FINETUNE)):
            skill, info = trained_slm(name, params, examples)
            print(f"scoring {name} on {len(texts)} test texts", flush=True)
            start = time.perf_counter()
            probs = skill.predict_proba(texts)
            batch_s = time.perf_counter() - start
            pred = [skill.classes_[int(i)] for i in probs.argmax(axis=1)]
            for t in texts[:20]:  # warm-up
                skill.predict([t])
            load0 = os.getloadavg()[0]
            lat, single, flagged = [], [], 0
            for i in sample:
                start = time.perf_counter()
                p = skill.predict([texts[i]])[0]
                lat.append(time.perf_counter() - start)
                single.append(p.label)
                flagged += p.abstained is not None
            out[name] = {
                **info,
                "pred_full": pred,
                "accuracy_full": sum(p == g for p, (_, g) in zip(pred, test, strict=True))
                / len(test),
                "accuracy_sample": sum(pred[i] == test[i][1] for i in sample) / len(sample),
                "single_query_s": lat,
                "single_equals_batch": sum(s == pred[i] for s, i in zip(single, sample,
                                                                        strict=True)),
                "out_of_scope_flags_sample": flagged,
                "batch_s": batch_s,
                "batch_texts_per_s": len(texts) / batch_s,
                "load_during_latency": [load0, os.getloadavg()[0]],
            }  # fmt: skip
            print(f"{name}: test {out[name]['accuracy_full']:.4f}, sample "
                  f"{out[name]['accuracy_sample']:.4f}, p50 {pct(lat, 50) * 1000:.1f} ms",
                  flush=True)  # fmt: skip
    cache.write_text(json.dumps(out))
    return out


# ---------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--n-val", type=int, default=40)
    ap.add_argument("--ks", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-quiet", type=int, default=25,
                    help="test queries asked again under the CPU lock, for the LLM's latency "
                         "without other jobs' load")  # fmt: skip
    ap.add_argument(
        "--write-results",
        action="store_true",
        help="write bench/results/llm_vs_slm.json and the bench/RESULTS.md section",
    )
    ap.add_argument("--smoke", action="store_true",
                    help="a minutes-long check of the script: 1/15 of the training set, "
                         "1 fine-tuning epoch, its own folder; writes no results")  # fmt: skip
    args = ap.parse_args()
    global OUT
    train, test = read_split("train"), read_split("test")
    if args.smoke:
        OUT = OUT.with_name("llm_vs_slm-smoke")
        train = train[::15]
        FINETUNE["epochs"] = 1
        args.write_results = False
    OUT.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    # Simple random samples with fixed seeds (not stratified), nested: a smaller --n-test
    # or --n-val takes a prefix of the same random order, so cached answers carry over.
    order = list(range(len(test)))
    random.Random(args.seed).shuffle(order)
    sample = sorted(order[: args.n_test])
    # The held-out set (and so the demonstration pool) does not depend on --n-val: the
    # first HOLDOUT draws leave the pool, the first --n-val of them are asked.
    drawn = random.Random(args.seed + 1).sample(range(len(train)), max(HOLDOUT, args.n_val))
    val_idx = sorted(drawn[: args.n_val])
    held = set(drawn)
    pool = [row for i, row in enumerate(train) if i not in held]
    val = [(i, *train[i]) for i in val_idx]
    test_items = [(i, *test[i]) for i in sample]
    print(f"train {len(train)} (pool {len(pool)}, validation {len(val)}), test {len(test)} "
          f"(sample {len(sample)}); majority label {Counter(g for _, g in train).most_common(1)}",
          flush=True)  # fmt: skip

    slm = slm_phase(train, test, sample)
    os.nice(10)  # the LLM part yields the CPU to everyone else's jobs
    run = LLMRun(pool, Answers(OUT / "llm_answers.jsonl"))
    try:
        llm = llm_phase(run, val, test_items, sorted(args.ks), args.n_quiet)
    finally:
        run.stop()
    report = build_report(
        train=train, test=test, sample=sample, slm=slm, llm=llm,
        meta={"started": started.strftime("%Y-%m-%d %H:%M UTC"),
              "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
              "slm_measured": datetime.fromtimestamp((OUT / "slm.json").stat().st_mtime, UTC)
              .strftime("%Y-%m-%d %H:%M UTC"),
              "command": command_line(), "args": vars(args), "machine": machine(),
              "model": MODEL, "finetune_params": FINETUNE, "n_pool": len(pool),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "prompts": {v: PROMPTS[v]["what"] for v in PROMPTS}},
    )  # fmt: skip
    text = json.dumps(report, indent=1, default=lambda d: str(d) if isinstance(d, Decimal)
                      else d)  # fmt: skip
    (OUT / "report.json").write_text(text)
    (OUT / "section.md").write_text(section(report), encoding="utf-8")
    if args.write_results:
        JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
        JSON_OUT.write_text(text + "\n")
        write_section(report)
        print(f"wrote {JSON_OUT} and the bench/RESULTS.md section", flush=True)
    print(json.dumps(report["headline"], indent=1, default=str))


if __name__ == "__main__":
    main()
