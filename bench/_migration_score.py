"""Scoring of ``bench/migration.py``: the LLM, the students alone, the served mix, baselines.

Everything here reads answers already given (the shim's cache holds the LLM's answer to
every call; the proxy's responses in the serve phase are what the app got) and the gold
kept aside in each :class:`~bench._migration_app.Request`.

- **Spend** at GPT-4 prices ($0.03 in / $0.06 out per 1k tokens, the ledger's ``gpt-4``
  entry): *before* = every call of the stretch answered by the LLM (its token counts from
  the reference pass); *after* = the upstream calls the shim received from the proxy during
  the stretch (cascaded calls and audit calls), priced the same way.
- **Baselines**, fitted on the recorded calls' LLM answers only (as the student is): the
  majority label (banking) / the most frequent value of each field (receipts), and
  "copy the answer of the closest recorded call" by TF-IDF cosine of the variable text.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from _migration_app import FIELDS, Request, answer_fields, answer_label, field_scores, fields_agree
from _migration_llm import Shim, body_key

IN_PER_1K, OUT_PER_1K = Decimal("0.03"), Decimal("0.06")


def price(usage: dict[str, Any]) -> Decimal:
    return (Decimal(int(usage.get("prompt_tokens") or 0)) * IN_PER_1K
            + Decimal(int(usage.get("completion_tokens") or 0)) * OUT_PER_1K) / 1000  # fmt: skip


def llm_answer(shim: Shim, r: Request) -> tuple[str, dict[str, Any], float]:
    """The LLM's answer text, usage and live wall time (ms) for ``r``."""
    rec = shim.cache[body_key(r.body)]
    return (rec["response"]["choices"][0]["message"]["content"] or "",
            rec["response"].get("usage") or {}, float(rec["live_ms"]))  # fmt: skip


def students_predict(tasks_file: Path, students: dict[str, Path], reqs: Sequence[Request]
                     ) -> dict[int, tuple[str, float]]:  # fmt: skip
    """Each student's answer (as the proxy would send it) and confidence on its task's calls."""
    from slmstack.proxy.shadow import ShadowTask
    from slmstack.skills.base import load

    tasks = {t["task_id"]: t for t in json.loads(tasks_file.read_text())["tasks"]}
    out: dict[int, tuple[str, float]] = {}
    for task_id, folder in students.items():
        t = tasks[task_id]
        shadow = ShadowTask(task_id, t["kind"], t["system"], t["prefix"], t["suffix"], None)
        mine = []
        for r in reqs:
            msgs = r.body["messages"]
            v = shadow.variable(msgs[0]["content"], msgs[-1]["content"])
            if v is not None:
                mine.append((r.i, v))
        if not mine:
            continue
        preds = load(folder).predict([v for _, v in mine])
        for (i, _), p in zip(mine, preds, strict=True):
            if t["kind"] == "classification":
                text = str(p.label or "")
            else:
                text = json.dumps(dict(p.data), ensure_ascii=False, default=str)
            out[i] = (text, float(p.confidence))
    return out


def baselines(
    recorded: Sequence[Request], shim: Shim, reqs: Sequence[Request]
) -> dict[str, dict[int, str]]:
    """Majority and TF-IDF-nearest answers for ``reqs``, fitted on ``recorded`` LLM answers."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import linear_kernel

    out: dict[str, dict[int, str]] = {"majority": {}, "tfidf_nearest": {}}
    for kind in ("banking", "receipt"):
        seen = [r for r in recorded if r.kind == kind]
        todo = [r for r in reqs if r.kind == kind]
        if not seen or not todo:
            continue
        answers = [llm_answer(shim, r)[0] for r in seen]
        if kind == "banking":
            top = Counter(answer_label(a) for a in answers).most_common(1)[0][0]
            majority = top
        else:
            parsed = [answer_fields(a) for a in answers]
            majority = json.dumps({k: Counter(str(p[k]) for p in parsed if p[k] is not None)
                                   .most_common(1)[0][0] if any(p[k] for p in parsed) else None
                                   for k in FIELDS})  # fmt: skip
        vec = TfidfVectorizer(sublinear_tf=True).fit([r.text for r in seen])
        sims = linear_kernel(
            vec.transform([r.text for r in todo]), vec.transform([r.text for r in seen])
        )
        for r, row in zip(todo, sims, strict=True):
            out["majority"][r.i] = majority
            out["tfidf_nearest"][r.i] = answers[int(row.argmax())]
    return out


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))], 2)


def quality(reqs: Sequence[Request], answers: dict[int, str]) -> dict[str, Any]:
    """Banking label accuracy and receipt field F1 of ``answers`` (by request index)."""
    bank = [r for r in reqs if r.kind == "banking" and r.i in answers]
    rec = [r for r in reqs if r.kind == "receipt" and r.i in answers]
    out: dict[str, Any] = {}
    if bank:
        right = sum(answer_label(answers[r.i]) == r.gold for r in bank)
        out["banking_accuracy"] = round(right / len(bank), 4)
        out["banking_n"] = len(bank)
    if rec:
        f = field_scores([(answer_fields(answers[r.i]), r.gold) for r in rec])
        out["receipt_micro_f1"] = f["micro"]["f1"]
        out["receipt_per_field_f1"] = {k: v["f1"] for k, v in f["per_field"].items()}
        out["receipt_n"] = len(rec)
    return out


def agreement(reqs: Sequence[Request], a: dict[int, str], b: dict[int, str]) -> dict[str, Any]:
    """Label equality (banking) and whole-answer / per-field equality (receipts) of a and b."""
    out: dict[str, Any] = {}
    bank = [r.i for r in reqs if r.kind == "banking" and r.i in a and r.i in b]
    if bank:
        out["banking"] = round(
            sum(answer_label(a[i]) == answer_label(b[i]) for i in bank) / len(bank), 4
        )
        out["banking_n"] = len(bank)
    rec = [r.i for r in reqs if r.kind == "receipt" and r.i in a and r.i in b]
    if rec:
        shares = [fields_agree(answer_fields(a[i]), answer_fields(b[i])) for i in rec]
        out["receipt_fields"] = round(statistics.fmean(shares), 4)
        out["receipt_all_fields"] = round(sum(s == 1.0 for s in shares) / len(shares), 4)
        out["receipt_n"] = len(rec)
    return out


def spend(shim: Shim, reqs: Sequence[Request], phase: str) -> dict[str, Any]:
    """GPT-4-priced LLM spend on ``reqs``: all sent to the LLM, against what the proxy sent."""
    known = [r for r in reqs if shim.is_cached(r.body)]
    before = sum((price(llm_answer(shim, r)[1]) for r in known), Decimal(0))
    missing = [r for r in reqs if not shim.is_cached(r.body)]
    for kind in {r.kind for r in missing}:  # no LLM answer: the kind's mean cost per call
        seen = [c for c in shim.cache.values() if _kind_of(c) == kind]
        mean = sum((price(c["response"].get("usage") or {}) for c in seen), Decimal(0)) / len(seen)
        before += mean * sum(r.kind == kind for r in missing)
    sent = [c for c in shim.calls if c["phase"] == phase]
    after = sum((price(c["usage"]) for c in sent), Decimal(0))
    return {"before_usd": str(round(before, 4)), "after_usd": str(round(after, 4)),
            "after_over_before": round(float(after / before), 4) if before else None,
            "upstream_calls_before": len(reqs), "upstream_calls_after": len(sent),
            "before_estimated_calls": len(missing),
            "upstream_after_live": sum(c["live"] for c in sent)}  # fmt: skip


def _kind_of(rec: dict[str, Any]) -> str:
    """A cached answer's kind, from its usage: receipts' answers are JSON objects."""
    text = rec["response"]["choices"][0]["message"]["content"] or ""
    return "receipt" if text.lstrip().startswith("{") else "banking"


def score(recorded: Sequence[Request], served: Sequence[Request], report: dict[str, Any],
          shim: Shim, tasks_file: Path, folders: dict[str, Path],
          shadowed: Sequence[Request] = ()) -> dict[str, Any]:  # fmt: skip
    """The figures of the run: share, agreement, quality, spend, latency, baselines."""
    answers = report["serve"]["answers"]
    mix = {a["i"]: a["content"] for a in answers}
    by = {a["i"]: a["by"] for a in answers}
    llm = {r.i: llm_answer(shim, r)[0] for r in served if shim.is_cached(r.body)}
    students = students_predict(tasks_file, folders, served)
    student = {i: text for i, (text, _) in students.items()}
    base = baselines(recorded, shim, served)
    out: dict[str, Any] = {"stretch": "the serve phase (post-promotion), "
                           f"{len(served)} calls"}  # fmt: skip
    shares = {}
    for kind in ("banking", "receipt", "all"):
        mine = [a for a in answers if kind == "all" or a["kind"] == kind]
        if mine:
            share = sum(a["by"] == "student" for a in mine) / len(mine)
            shares[kind] = {"answered_by_student": round(share, 4), "n": len(mine),
                            "by": dict(Counter(a["by"] for a in mine))}  # fmt: skip
    out["share_answered_by_slm"] = shares
    out["llm_answers_known"] = f"{len(llm)} of {len(served)} calls of the stretch"
    out["quality"] = {"llm": quality(served, llm), "student_alone": quality(served, student),
                      "served_mix": quality(served, mix),
                      **{f"baseline_{k}": quality(served, v) for k, v in base.items()}}  # fmt: skip
    answered = {i: t for i, t in mix.items() if by[i] == "student"}
    out["agreement_with_llm"] = {"student_alone": agreement(served, student, llm),
                                 "student_answered_calls": agreement(served, answered, llm),
                                 "served_mix": agreement(served, mix, llm)}  # fmt: skip
    out["spend_gpt4_prices"] = spend(shim, served, "serve")
    if shadowed:  # the stretch the gate saw: every call has both answers
        llm_sh = {r.i: llm_answer(shim, r)[0] for r in shadowed if shim.is_cached(r.body)}
        st_sh = {i: t for i, (t, _) in students_predict(tasks_file, folders, shadowed).items()}
        out["shadow_stretch"] = {"llm": quality(shadowed, llm_sh),
                                 "student_alone": quality(shadowed, st_sh),
                                 "agreement": agreement(shadowed, st_sh, llm_sh)}  # fmt: skip
    earlier = [r for r in list(recorded) + list(shadowed) if shim.is_cached(r.body)]
    out["llm_on_record_and_shadow"] = quality(
        earlier, {r.i: llm_answer(shim, r)[0] for r in earlier}
    )
    direct, proxied = report["record"]["ms"]["direct"], report["record"]["ms"]["proxy"]
    student_ms = [a["ms"] for a in answers if a["by"] == "student"]
    everyone = [r for r in list(recorded) + list(served) if shim.is_cached(r.body)]
    live = {kind: [ms for r in everyone if r.kind == kind and (ms := llm_answer(shim, r)[2]) > 0]
            for kind in ("banking", "receipt")}  # fmt: skip
    out["latency_ms"] = {
        "proxy_added_p50": round(statistics.median(proxied) - statistics.median(direct), 3),
        "direct_p50": pct(direct, 50), "via_proxy_p50": pct(proxied, 50),
        "student_answered_via_proxy": {"p50": pct(student_ms, 50), "p95": pct(student_ms, 95),
                                       "n": len(student_ms)},
        "llm_live": {k: {"p50": pct(v, 50), "p95": pct(v, 95), "n": len(v)}
                     for k, v in live.items()},
    }  # fmt: skip
    conf = [c for _, c in students.values()]
    out["student_confidence_p50"] = pct(conf, 50)
    out["upstream_counts_by_phase"] = {k: dict(v) for k, v in shim.counts.items()}
    return out
