"""The ``bench/RESULTS.md`` section of ``bench/migration.py``, written from its report."""

from __future__ import annotations

from typing import Any


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.1f} %"


def _num(x: Any, digits: int = 1) -> str:
    return "–" if x is None else f"{float(x):.{digits}f}"


def section(r: dict[str, Any]) -> str:
    """Markdown: set-up, the targets table, then the detail tables."""
    s = r.get("scores", {})
    q, ag = s.get("quality", {}), s.get("agreement_with_llm", {})
    share, spend, lat = (
        s.get("share_answered_by_slm", {}),
        s.get("spend_gpt4_prices", {}),
        s.get("latency_ms", {}),
    )
    sizes, disc = r["sizes"], r["discover"]
    m = r.get("machine", {})
    lines = [
        "## Migration: an app's LLM traffic moved to small models, end to end (issue 18)",
        "",
        f"Command: `{r.get('command', '.venv/bin/python bench/migration.py --write-results')}` "
        f"(takes the CPU lock itself, per phase). Machine: {m.get('model_name', '?')}, "
        f"{m.get('cpu_count', '?')} cores, flags `{m.get('cpu_flags', '')}`.",
        "",
        f"- **App traffic**: {sizes['banking']} BANKING77 test queries and {sizes['receipts']} "
        "SROIE receipts, interleaved in a seeded time order, each kind with one fixed prompt "
        "(system prompt + the 77 labels + the query; an extraction prompt asking for JSON "
        "`{company, date, address, total}` with `response_format: json_object`). The app asks "
        "for `gpt-4`; the proxy prices every call as GPT-4 ($0.03 in / $0.06 out per 1k).",
        "- **LLM**: Qwen2.5-Coder-1.5B-Instruct Q4_K_M on `llama_cpp.server` (2 threads, "
        "`nice -n 10`, RAM prompt cache: `--cache true --cache_type ram --cache_size 100000000`; "
        "llama-cpp-python counts only llama.cpp's state, about 13 MB a state, against that "
        "budget while each saved state also copies a 311 MB logits buffer, so a 2 GiB "
        "budget grew past 15 GB and thrashed the machine), "
        "behind a caching shim that stores each answer by request-body hash "
        "(`bench/out/migration/llm_cache.jsonl`).",
        f"- **Phases** (a real `slmstack proxy` subprocess, SQLite ledger): record "
        f"{_kinds(sizes['record'])}; `slmstack discover`; `slmstack distill --task` per task; "
        f"shadow {_kinds(sizes['shadow'])}; `slmstack promote --task`; serve "
        f"{_kinds(sizes['serve'])} (promoted tasks answered by their students, cascade to the "
        "LLM below the tuned threshold, audit sample). Scores are on the serve stretch: "
        "nothing was tuned on it.",
        "",
        "| measure | target | measured |",
        "|---|---|---|",
        f"| tasks found by `discover` | both, no false merge | {len(disc['tasks'])} tasks; "
        f"no false merge: {disc['no_false_merge']}; each true task whole: "
        f"{disc['pass']} |",
        f"| share of post-promotion requests answered by SLMs | ≥ 80 % | "
        f"{_pct(share.get('all', {}).get('answered_by_student'))} |",
        f"| student vs gold, BANKING77 | ≥ LLM teacher | student "
        f"{_pct(q.get('student_alone', {}).get('banking_accuracy'))}, LLM "
        f"{_pct(q.get('llm', {}).get('banking_accuracy'))} |",
        f"| LLM spend after / before (GPT-4 prices) | ≤ 20 % | "
        f"{_pct(spend.get('after_over_before'))} (${spend.get('after_usd')} / "
        f"${spend.get('before_usd')}) |",
        f"| added p50 latency of the proxy | ≤ 5 ms | {_num(lat.get('proxy_added_p50'), 2)} ms |",
        "",
        "| system (serve stretch) | BANKING77 accuracy | receipts field F1 (micro) | "
        "agreement with the LLM (banking / receipts all fields) |",
        "|---|---|---|---|",
    ]
    rows = [("LLM (Qwen 1.5B, zero-shot prompt)", "llm", None),
            ("student alone", "student_alone", "student_alone"),
            ("served mix (student ≥ threshold, else LLM)", "served_mix", "served_mix"),
            ("baseline: majority answer", "baseline_majority", None),
            ("baseline: copy the closest recorded answer (TF-IDF)", "baseline_tfidf_nearest",
             None)]  # fmt: skip
    for name, key, agree_key in rows:
        a = ag.get(agree_key, {}) if agree_key else {}
        agree = (f"{_pct(a.get('banking'))} / {_pct(a.get('receipt_all_fields'))}"
                 if agree_key else ("100 %" if key == "llm" else "–"))  # fmt: skip
        f1 = q.get(key, {}).get("receipt_micro_f1")
        lines.append(f"| {name} | {_pct(q.get(key, {}).get('banking_accuracy'))} | "
                     f"{_pct(f1)} | {agree} |")  # fmt: skip
    lines += ["", "| task | distill (train / held-out, agreement) | promotion | share served by "
              "student |", "|---|---|---|---|"]  # fmt: skip
    kind_of = {t["task_id"]: t["kind"] for t in disc["tasks"]}
    for task_id, d in r.get("distill", {}).items():
        p = r.get("promote", {}).get(task_id, {})
        true = "banking" if kind_of.get(task_id) == "classification" else "receipt"
        lines.append(
            f"| {task_id} ({kind_of.get(task_id)}) | {d.get('train_texts', '?')} / "
            f"{d.get('held_out_texts', '?')}, {_pct(d.get('agreement_with_teacher'))} | "
            f"{'promoted' if p.get('promoted') else 'not promoted'}: "
            f"{str(p.get('reason', p.get('stderr', '')))[:160]} | "
            f"{_pct(share.get(true, {}).get('answered_by_student'))} |"
        )
    llm = lat.get("llm_live", {})
    st = lat.get("student_answered_via_proxy", {})
    lines += [
        "",
        f"Latency: LLM live calls p50 {_num((llm.get('banking') or {}).get('p50'), 0)} ms "
        f"(banking), {_num((llm.get('receipt') or {}).get('p50'), 0)} ms (receipts); a "
        f"student-answered call through the proxy p50 {_num(st.get('p50'))} ms, p95 "
        f"{_num(st.get('p95'))} ms. Proxy added p50 {_num(lat.get('proxy_added_p50'), 2)} ms "
        f"(each recorded call also sent straight to the shim, cached answers, alternating).",
        f"Upstream answers by phase (live / cached): {s.get('upstream_counts_by_phase')}.",
    ]
    return "\n".join(lines) + "\n"


def _kinds(k: dict[str, int]) -> str:
    return f"{k['banking']} queries + {k['receipt']} receipts"
