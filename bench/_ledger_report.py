"""Ledger benchmark: the bench/RESULTS.md section and its caveats."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from _ledger_common import (
    COMMAND,
    FLAGS_CMD,
    RESULTS,
    SECTION,
)

# ---------------------------------------------------------------- report


def render(res: dict[str, Any]) -> str:
    info = res["machine"]
    p1 = res["exactness"]
    lines = [
        SECTION, "",
        f"Command: `{COMMAND}`", "",
        f"Measured {res['when']} on {info['cores']} CPU cores ({info['cpu']}; flags from "
        f"`{FLAGS_CMD}`: {' '.join(info['flags'])}), Python {info['python']}, SQLAlchemy "
        f"{info['sqlalchemy']}, SQLite {info['sqlite']}, PostgreSQL "
        f"{info.get('postgresql') or 'not run'}. The cores are "
        "shared with other engineers' jobs (an LLM benchmark runs niced, outside the lock); "
        "the load average (1, 5, 15 min) is given beside each timing.", "",
        f"**Part 1, exactness.** {p1[0]['requests']:,} simulated requests of three workflows "
        "(support-desk on cpu-2vcpu, contracts on gpu-a100, receipts on cpu-4vcpu), metered by "
        "the library's `Meter.rows` (what `Workflow.run` records) into a real `Ledger`. Steps "
        "priced per token (gpt-4o with claude-3-5-haiku as its fallback, gpt-4, gpt-4.1-mini, "
        "gemini-1.5-flash with gpt-4o-mini as fallback, and `acme-frac` at $0.0000375 / "
        "$0.00015 per 1k: 37.5 and 150 nano-dollars a token) and by compute time (local skills "
        "on three machines, the cascades' own time, and `my-vllm` self-hosted on gpu-l4). "
        "Times are given in three time zones; days are UTC. The reference is recomputed "
        "independently: prices read from the YAML as `Decimal`, each row's exact cost summed "
        "unrounded (80 digits).", "",
        "| database | requests | rows (steps + runs) | total, ledger | total, exact | largest "
        "difference (group) | largest difference per row | groups (model / workflow / day) | "
        "counts, tokens, keys equal | cents equal | exact to the cent (< $0.005) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for p in p1:
        g = p["groups"]
        cents = sum(c["cent_mismatches"] for c in g.values())
        same = all(c["keys_match"] and c["counts_and_tokens_match"] for c in g.values())
        lines.append(
            f"| {p['database']} | {p['requests']:,} | {p['rows']:,} | "
            f"${Decimal(p['total_usd_ledger']):,.9f} | ${Decimal(p['total_usd_exact']):,.12f} | "
            f"${Decimal(p['max_abs_diff_usd']):.9f} ({p['max_abs_diff_at']}) | "
            f"{Decimal(p['max_abs_diff_per_row_usd']).scaleb(9):.4f} n$ | "
            f"{g['model']['groups']} / {g['workflow']['groups']} / {g['day']['groups']} | "
            f"{'yes' if same else 'NO'} | {'all' if not cents else f'{cents} differ'} | "
            f"{'yes' if p['exact_to_the_cent'] else 'NO'} |"
        )  # fmt: skip
    lines += ["", "| database | metering (`Meter.rows`) per request | ledger write throughput "
              "(append + flush, batches of 512) | `total()` | `spend(model / workflow / day)` "
              "| load average before → after |", "|---|---|---|---|---|---|"]  # fmt: skip
    for p in p1:
        s = p["seconds"]
        lines.append(
            f"| {p['database']} | {p['meter_us_per_request']} µs | {p['write_rows_per_s']:,} "
            f"rows/s ({s['ledger_append_and_flush']} s for {p['rows']:,} rows) | "
            f"{s['total_query'] * 1000:.0f} ms | {s['spend_by_model'] * 1000:.0f} / "
            f"{s['spend_by_workflow'] * 1000:.0f} / {s['spend_by_day'] * 1000:.0f} ms | "
            f"{p['load_before']} → {p['load_after']} |"
        )
    micro = max(Decimal(p["max_abs_diff_if_micro_dollar_rows_usd"]) for p in p1)
    lines += ["", f"For scale: had each row been rounded to micro-dollars instead of "
              f"nano-dollars, the largest group would be off by ${micro:.4f}.", ""]  # fmt: skip
    p2 = res.get("overhead")
    if p2:
        lines += [
            f"**Part 2, overhead.** A support-desk workflow over the example's trained skills "
            "(LanguageDetector → FAQAnswerer de/fr; or TextClassifier `head` intent in a "
            "cascade → FAQAnswerer en or a queue template), "
            f"{p2['requests_per_condition']:,} texts per condition (the example's 282 texts, "
            f"cycled), one at a time, torch with {p2['torch_threads']} threads; conditions "
            f"alternate in blocks of {p2['block']} texts, the order rotating each block; "
            f"{p2['wall_s']} s in all, load average {p2['load_before']} → {p2['load_after']}.",
            "",
            "| condition | mean per request | p50 per request | overhead, total time (95% CI) "
            "| p50 of per-request overhead, paired on the same text (95% CI) | target |",
            "|---|---|---|---|---|---|",
        ]  # fmt: skip
        for name, c in p2["conditions"].items():
            ci, cp = c["overhead_total_pct_ci95"], c["overhead_p50_per_request_ms_ci95"]
            over = (
                "—"
                if name == "none"
                else (f"{c['overhead_total_pct']:+.2f}% ({ci[0]:+.2f} to {ci[1]:+.2f})")
            )
            paired = (
                "—"
                if name == "none"
                else (
                    f"{c['overhead_p50_per_request_ms']:+.3f} ms "
                    f"({c['overhead_p50_per_request_pct']:+.2f}%; {cp[0]:+.3f} to {cp[1]:+.3f} ms)"
                )
            )
            target = "≤ 5%" if name in p2["direct"] else ""
            lines.append(f"| {name} | {c['mean_ms']:.2f} ms | {c['p50_ms']:.2f} ms | {over} | "
                         f"{paired} | {target} |")  # fmt: skip
        stored = ", ".join(f"{k} {v:,}" for k, v in p2["rows_stored"].items())
        lines += ["", f"Rows each ledger held after the run (warm-up included): {stored}."]
        lines += ["", "The metering alone, timed on the stored results of the `none` runs "
                  "(no skills running, so no skill noise):", "",
                  "| database | build rows (`Meter.rows`) | buffer + write | ledger per request "
                  "| share of a mean request | write throughput |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for kind, d in p2["direct"].items():
            lines.append(
                f"| {kind} | {d['meter_us_per_request']} µs | "
                f"{d['append_and_write_us_per_request']} µs | {d['ledger_us_per_request']} µs | "
                f"{d['ledger_pct_of_mean_request']:.2f}% | {d['write_rows_per_s']:,} rows/s "
                f"({d['rows']:,} rows) |"
            )
    lines += ["", "### Caveats", ""] + [f"- {c}" for c in res["caveats"]] + [""]
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Append the section to RESULTS.md, or replace this script's own earlier section."""
    current = RESULTS.read_text(encoding="utf-8")  # re-read now: others append too
    if SECTION in current:
        head, rest = current.split(SECTION, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1 :] if nxt >= 0 else ""
        RESULTS.write_text(head + text + ("\n" + tail if tail else ""), encoding="utf-8")
    else:
        RESULTS.write_text(current.rstrip("\n") + "\n\n" + text, encoding="utf-8")


def caveats(res: dict[str, Any]) -> list[str]:
    out = [
        "Part 1's traces are synthetic (random latencies, token counts, routes); the pricing, "
        "the rows, the buffer, the inserts and the sums are the library's code. The reference "
        "shares only the definition of a step's priced time (its latency less its children's, "
        "as a float) and of the UTC day.",
        "Each row is rounded once, to a nano-dollar (half to even), so a sum over r rows may "
        "differ from the exact sum by up to r × 0.5 n$; the per-row column shows how close to "
        "that bound the sums come. Token prices with up to six decimals per 1k are whole "
        "nano-dollars a token, so only compute time and `acme-frac` round at all.",
        "The packaged table has no per-token price that is not a whole number of nano-dollars "
        "(gemini-1.5-flash's $0.000075 per 1k is 75 n$ a token); `acme-frac` was added over "
        "it for that case, as a user's `prices:` would be.",
    ]
    if not any(p["database"] == "postgresql" for p in res["exactness"]):
        out.append("PostgreSQL was not run (no `--postgres`, or no server could be started): "
                   "SQLite only.")  # fmt: skip
    p2 = res.get("overhead")
    if p2:
        direct = ", ".join(f"{d['ledger_us_per_request']:.0f} µs on {k}"
                           for k, d in p2["direct"].items())  # fmt: skip
        out += [
            "The ledger costs a roughly fixed time per request (here " + direct + ": building "
            "the rows, and one multi-row insert per 512 rows or 5 s, made inside the request "
            "that fills the buffer), so its share depends on how fast the workflow is: with "
            f"requests of {p2['conditions']['none']['p50_ms']:.1f} ms p50 it is the share shown; "
            "on a contended machine, where the skills slow down far more than the ledger, it "
            "reads smaller. Compare each ledger row with the A/A control (two identical "
            "no-ledger workflows), which shows how much a difference of nothing reads as here; "
            "the intervals resample texts and do not cover bursts of load that span a block.",
        ]
    out += [
        "SQLite writes to a file in the system temporary folder with SQLite's default "
        "durability (a sync per flushed batch); PostgreSQL is a throwaway local cluster "
        "started with `-F` (no fsync) by scripts/test.sh's block, on loopback: a remote or "
        "durable server costs more per flush, but flushes are batched (512 rows or 5 s).",
        "The workflow answers without escalating to the inbox or an LLM (templates instead), "
        "so that only the ledger differs between conditions; a workflow that calls an LLM "
        "would make the ledger's share smaller still.",
    ]
    return out
