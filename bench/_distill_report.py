# ruff: noqa: E501  (the RESULTS.md paragraphs are written as single lines)
"""``bench/distill.py``: costs, and the bench/RESULTS.md section."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from _distill_common import (
    REPO,
    RESULTS_MD,
    SECTION,
)


# ---------------------------------------------------------------- report
def costs(result: dict[str, Any], per_hour: Decimal) -> dict[str, Any]:
    """The teacher's spend (GPT-4 tokens, local machine time) and the students' training."""
    from slmstack.costs.prices import NANO

    pool = result["teacher"]["pool"]
    n = pool["n"]
    log = result["meta"]["label_log"].get(f"pool|k{result['chosen']['k']}", {})
    parts = [result["teacher"]["pool"], result["teacher"]["test_subset"],
             *result["validation"].values()]  # fmt: skip

    def per_1k(dollars: str) -> str:
        return str((Decimal(dollars) * 1000 / n).quantize(NANO))

    def machine_cost(seconds: float) -> str:
        return str((Decimal(seconds) * per_hour / 3600).quantize(NANO))

    return {
        "pool_labels": n,
        "pool_gpt4_usd": pool["cost_gpt4_usd"], "pool_local_usd": pool["cost_local_usd"],
        "pool_gpt4_per_1k_labels_usd": per_1k(pool["cost_gpt4_usd"]),
        "pool_local_per_1k_labels_usd": per_1k(pool["cost_local_usd"]),
        "pool_local_seconds_per_label": pool["local_seconds"] / n,
        "pool_server_cpu_s_logged": log.get("server_cpu_s"),
        "pool_labels_logged": log.get("n"),
        "all_teacher_calls": sum(p["n"] for p in parts),
        "all_teacher_gpt4_usd": str(sum(Decimal(p["cost_gpt4_usd"]) for p in parts)),
        "all_teacher_local_usd": str(sum(Decimal(p["cost_local_usd"]) for p in parts)),
        "student_train_usd": {name: machine_cost(s["train_s"])
                              for name, s in result["students"].items()},
        "note": "local = wall seconds of each call (batch mean) x the machine's hourly price; "
                "GPT-4 = the same calls' measured tokens at gpt-4's list prices",
    }  # fmt: skip


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def write_section(r: dict[str, Any]) -> None:
    """Append this benchmark's section to bench/RESULTS.md, or replace an earlier one."""
    m, sz, t, c, rep = r["meta"], r["sizes"], r["teacher"], r["costs"], r["distill_report"]
    st, k = r["students"], r["chosen"]["k"]
    n_sub = sz["teacher_test_subset"]
    rows = [
        (
            f"teacher: `{m['teacher_model']}` served by llama.cpp, few-shot k={k} from the seed set",
            f"{sz['seed']} seed examples (demonstrations)",
            "-",
            pct(t["test_subset"]["accuracy"]),
            "100",
            "-",
        ),
    ]
    names = {
        "teacher": f"student from seed gold + teacher labels of {rep['train_texts']} pool texts (`distill()`)",
        "gold": f"student from seed gold + gold labels of the same {rep['train_texts']} pool texts",
        "seed": f"student from the {sz['seed']} seed examples only (no LLM)",
    }
    for name, what in names.items():
        s = st[name]
        rows.append((what, str(s["n_train"]), pct(s["accuracy"]),
                     pct(s["accuracy_teacher_subset"]), pct(s["agreement_teacher_subset"]),
                     f"{s['train_s']:.0f} ({s['train_cpu_s']:.0f})"))  # fmt: skip
    b = r["baselines"]
    rows.append(("nearest seed example (MiniLM 1-NN, the teacher's retriever alone)",
                 str(sz["seed"]), pct(b["seed_1nn"]["accuracy"]),
                 pct(b["seed_1nn"]["accuracy_teacher_subset"]), "-", "-"))  # fmt: skip
    rows.append((f"majority class ({b['majority']['label']})", "-",
                 pct(b["majority"]["accuracy"]), "-", "-", "-"))  # fmt: skip
    table = "\n".join(
        [
            "| system | training texts | test accuracy % "
            f"(n={sz['test_sample']}) | accuracy % on the teacher's subset (n={n_sub}) | "
            f"agreement with the teacher % (n={n_sub}) | training wall s (CPU s) |",
            "|---|---|---|---|---|---|",
        ]
        + ["| " + " | ".join(row) + " |" for row in rows]
    )
    val = ", ".join(f"k={key[1:]}: {pct(v['accuracy'])} % ({v['tokens_in_mean']:.0f} tokens in)"
                    for key, v in r["validation"].items())  # fmt: skip
    lo = [v["load1"] for v in st.values()]
    pool = t["pool"]
    bud = m["pool_budget"]
    pool_note = (f"all {bud['asked']} asked for" if bud["n"] == bud["asked"] else
                 f"of {bud['asked']} asked for, as many as a {bud['budget_min']:g}-minute "
                 f"labelling budget allowed at the {bud['seconds_per_label_validation']:.1f} s "
                 "per label measured on validation")  # fmt: skip
    section = f"""{SECTION}

The setting distillation is for: a team has a few labelled examples, many unlabelled texts and an LLM. CLINC150 in-scope ({m["n_labels"]} intents; the label list is 658 Qwen tokens, so it fits the teacher's 4,096-token window with retrieved examples, and CLINC150 was chosen over BANKING77). SEED: {sz["seed"]} training texts ({r["meta"]["args"]["seed_per_label"]} per intent, fixed seed); POOL: {sz["pool"]} further training texts ({pool_note}), their gold labels hidden from every system trained on teacher labels; VALIDATION: {sz["validation"]} further training texts; TEST: {sz["test_sample"]} test texts sampled with seed {r["meta"]["args"]["seed"] + 3}, of which the first {n_sub} drawn score the teacher (for time). The teacher is `LLMClassifier(model="{m["teacher_model"]}", runtime="openai")` against `python -m llama_cpp.server` (niced, 2 threads, n_ctx 4096): label list, the `k` nearest seed examples (MiniLM) as chat turns, the answer constrained to the labels, one greedy call per text without log-probabilities (they cost about half of each call on llama-cpp-python), so the student is not confidence-weighted. `k` was chosen on validation: {val}; chosen k={k}. Labels go through `TeacherCache` and are costed by `Meter.skill_cost`; the student is `TextClassifier(strategy="head")` on MiniLM, trained by `slmstack.distill.distill` on the teacher's labels of {100 - round(100 * r["meta"]["args"]["held_out"])} % of the pool (the other {rep["held_out_texts"]} pool texts measure agreement) plus the seed set's gold labels: with {m["n_labels"]} intents and a few hundred pool texts many intents get fewer than two teacher labels, which `TextClassifier` rejects, and the team has the seed set anyway. Its peer gets the seed set plus the *gold* labels of exactly the same pool texts. Every student uses the same recipe (the defaults, including a 10 % per-label validation split for calibration, taken from its training texts).

Measured {m["started"]} to {m["finished"]}: {m["machine"]["cpu_count"]} CPU cores, {m["machine"]["model_name"]} ({m["machine"]["cpu_flags"]}); students trained holding the shared CPU lock, 1-minute load average {min(x[0] for x in lo):.1f}–{max(x[1] for x in lo):.1f} during training; labelling ran niced without the lock beside other jobs (load averages per batch in `bench/results/distill.json`).

{table}

Agreement of the distilled student with the teacher on the {rep["held_out_texts"]} held-out pool texts (`distill()`'s own figure): {pct(rep["agreement_with_teacher"])} %; there the student is {pct(rep["student_gold_accuracy"])} % and the teacher {pct(rep["teacher_gold_accuracy"])} % right against gold. The teacher's labels of the whole pool are {pct(pool["accuracy"])} % right ({pool["abstained"]} abstentions): the student from teacher labels learns from about {100 - round(100 * pool["accuracy"])} % wrong labels.

Teacher cost for the {c["pool_labels"]} pool labels: {pool["tokens_in"]:,} tokens in and {pool["tokens_out"]:,} out ({pool["tokens_in_mean"]:.0f} / {pool["tokens_out_mean"]:.1f} per text). At GPT-4's list prices ($0.03 / $0.06 per 1k): **${Decimal(c["pool_gpt4_usd"]):.4f}** (${Decimal(c["pool_gpt4_per_1k_labels_usd"]):.2f} per 1,000 labels). As measured local compute ({pool["local_seconds"]:.0f} s of wall time, {c["pool_local_seconds_per_label"]:.1f} s per label, × ${m["machine_per_hour_usd"]}/h for `{m["price_machine"]}`): **${Decimal(c["pool_local_usd"]):.4f}** (${Decimal(c["pool_local_per_1k_labels_usd"]):.4f} per 1,000 labels). All {c["all_teacher_calls"]} teacher calls of the run (validation, pool, test): ${Decimal(c["all_teacher_gpt4_usd"]):.4f} at GPT-4 prices, ${Decimal(c["all_teacher_local_usd"]):.4f} locally. Training the distilled student: {st["teacher"]["train_s"]:.0f} s, ${Decimal(c["student_train_usd"]["teacher"]):.6f} on `{m["price_machine"]}`.

Command (from the repository root; the script waits for any other `{m["teacher_model"]}` server, labels niced without the lock, and takes `/tmp/slmstack-cpu.lock` itself for the students):

```
{m["command"].replace(str(REPO) + "/", "")}
```

Caveats: one run, one seed. The teacher is scored on {n_sub} test texts (a 95 % interval of about ±{196 * (t["test_subset"]["accuracy"] * (1 - t["test_subset"]["accuracy"]) / n_sub) ** 0.5:.0f} points), the students on {sz["test_sample"]}; compare them on the subset column. `k` was chosen on {sz["validation"]} texts, which separates only large differences. Local cost is wall time on a shared, niced 2-core machine (the server's CPU seconds are in the JSON); a dedicated machine labels faster and cheaper. The GPT-4 figure prices the *local* model's tokens (Qwen's tokenizer) at GPT-4's rates: what this many calls of this prompt would cost, not what GPT-4 would answer.
"""
    text = RESULTS_MD.read_text(encoding="utf-8")  # re-read right before writing
    if SECTION in text:
        head, rest = text.split(SECTION, 1)
        nxt = rest.find("\n## ")
        text = head + section.rstrip("\n") + "\n" + (rest[nxt:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS_MD.write_text(text, encoding="utf-8")
