"""How ``bench/batch.py`` reports: the medians over rounds, the scaling from 1 to 2 workers,
and the RESULTS.md section (with what many nodes would change)."""

from __future__ import annotations

import statistics
from typing import Any

TARGET = 1.7  # Ray, 2 workers against 1 (issue 16)

KEYS = ("items_per_s", "steady_items_per_s")


def medians(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per engine and worker count, the median over rounds of each throughput."""
    out: dict[str, dict[str, float]] = {}
    for engine in ("local", "ray"):
        for w in (1, 2):
            mine = [r for r in runs if r["engine"] == engine and r["workers"] == w]
            out[f"{engine}{w}"] = {k: statistics.median(r[k] for r in mine) for k in KEYS}
    return out


def scaling(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """2 workers against 1, per engine: per round (the same round's pair), and the median.

    The machine's speed drifts between rounds (other virtual machines share its host), so
    a ratio is taken within a round, where both runs saw about the same machine, and the
    headline is the median of those ratios, not the ratio of medians over rounds.
    """
    out: dict[str, dict[str, Any]] = {}
    for engine in ("local", "ray"):
        by_round = {}
        for r in sorted({r["round"] for r in runs}):
            pair = {x["workers"]: x for x in runs if x["engine"] == engine and x["round"] == r}
            by_round[r] = {k: round(pair[2][k] / pair[1][k], 2) for k in KEYS}
        out[engine] = {
            k: round(statistics.median(v[k] for v in by_round.values()), 2) for k in KEYS
        }
        out[engine]["efficiency_steady"] = round(out[engine]["steady_items_per_s"] / 2, 2)
        out[engine]["per_round"] = by_round
    return out


def render(res: dict[str, Any]) -> str:
    info = res["machine"]
    lines = [
        "## Batch jobs: local engine against Ray Data, 1 and 2 workers (`bench/batch.py`)",
        "",
        f"{res['texts']:,} texts (BANKING77 then CLINC150) through an intent cascade: "
        '`TextClassifier(strategy="head")` on MiniLM, confidence ≥ 0.5 answers, below '
        "files an inbox packet; SQLite inbox and ledger. Batch "
        f"{res['batch_size']}, torch on **1 thread per worker** (on "
        f"{info['cpu_count']} cores a 2-thread worker already fills the machine, so 2 "
        f"workers could not scale). {res['rounds']} rounds of the four runs (local 1 and 2 "
        "workers, then Ray 1 and 2 on a Ray instance started for the round; odd rounds run "
        "2 workers first). Each 2-to-1 ratio is taken within a round, where both runs saw "
        "about the same machine, and the median over rounds is reported: the machine's "
        'speed drifts between rounds. "Workers running" is the middle 80% of the '
        "runs by their ledger time stamps, which the workers write as each batch ends: the "
        "same clock for both engines (the driver's is not: Ray Data hands a block over about "
        "one block late). "
        f"CPU: {info['model_name']} ({info['cpu_count']} cores). Command: `{res['command']}`.",
        "",
        "| round | engine | workers | items/s (whole job) | items/s (workers running) | "
        "start-up s | escalated | packets | ledger runs | CPU-s workers | CPU-s driver + rest |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["runs"]:
        lines.append(
            f"| {r['round']} | {r['engine']} | {r['workers']} | {r['items_per_s']} | "
            f"{r['steady_items_per_s']} | {r['startup_seconds']} | {r['escalated']} | "
            f"{r['packets']} | {r['ledger_runs']} | {r['worker_cpu_s']} | {r['other_cpu_s']} |"
        )
    sc = res["speedup_2_over_1"]
    lines += [
        "",
        "| engine | 2 workers / 1, whole job (median; each round) | 2 / 1, workers running "
        "(median; each round) | scaling efficiency |",
        "|---|---:|---:|---:|",
    ]
    for engine, s in sc.items():
        per = s["per_round"].values()
        whole = ", ".join(f"{p['items_per_s']}" for p in per)
        steady = ", ".join(f"{p['steady_items_per_s']}" for p in per)
        lines.append(
            f"| {engine} | **{s['items_per_s']}×** ({whole}) | **{s['steady_items_per_s']}×** "
            f"({steady}) | {s['efficiency_steady']:.0%} |"
        )
    same = all(res["identical_to_local_1"].values())
    lines += [
        "",
        f"Outputs identical across all {len(res['runs'])} runs (latencies and packet ids "
        f"aside): **{'yes' if same else 'NO'}**. Target: Ray 2 workers ≥ {TARGET}× 1 worker.",
    ]
    cores = info["cpu_count"]
    two = {r["engine"]: r for r in res["runs"] if r["workers"] == 2 and r["round"] == 0}
    lines += [
        "",
        f"Where the CPU went with 2 workers on {cores} cores (round 0): "
        + "; ".join(
            f"{e}: workers {r['worker_cpu_s']} CPU-s, driver, pool and daemons "
            f"{r['other_cpu_s']} CPU-s ({r['other_cpu_s'] / (r['seconds'] * cores):.0%} of "
            "the machine over the job)"
            for e, r in two.items()
        )
        + ". Whatever is not a worker (the driver writing the output, Ray's GCS, raylet "
        "and Ray Data's executor and its helper actors) competes with the two workers for "
        "the two cores, which it does not at 1 worker; on a node with many cores that "
        "share is small.",
        "",
        many_nodes(res),
    ]
    return "\n".join(lines) + "\n"


def many_nodes(res: dict[str, Any]) -> str:
    """The paragraph, on paper, on what these figures mean for a many-node cluster."""
    one_worker = next(r for r in res["runs"] if r["engine"] == "ray" and r["workers"] == 1)
    rate = res["medians"]["ray1"]["steady_items_per_s"]
    share = one_worker["escalated"] / one_worker["rows"]
    costs = res["sink_costs_sqlite"]
    packet_ms = costs["inbox_ms_per_packet_in_batches_of_21"]
    ledger_ms = costs[f"ledger_ms_per_batch_of_{res['batch_size']}"]
    inbox_cap = 1000 / (packet_ms * share) if share else float("inf")
    ledger_cap = res["batch_size"] * 1000 / ledger_ms
    eff = res["speedup_2_over_1"]["ray"]["efficiency_steady"]
    first = "inbox" if inbox_cap < ledger_cap else "ledger"
    return (
        "**On a many-node cluster (on paper, from these figures).** The model work scales "
        "linearly: each actor holds its own copy of the model and runs its batches with "
        f"nothing shared but the sinks, so N one-core workers give about N × {rate:.0f} "
        f"items/s ({eff:.0%} efficiency measured at 2). What does not scale is what every "
        "worker shares, and the bottleneck moves there. (1) The **inbox** files a batch's "
        "packets in one transaction (`Inbox.add_many`), one INSERT per packet to get its id "
        f"({packet_ms} ms a packet in batches of 21 on SQLite here, against "
        f"{costs['inbox_ms_per_packet']} ms for a packet in a transaction of its own); with "
        f"{share:.0%} of these texts escalating, one inbox caps the job near "
        f"{inbox_cap:,.0f} items/s ({inbox_cap / rate:,.0f} workers' worth); one multi-row "
        "INSERT ... RETURNING per batch would lift that further. (2) The **ledger** writes "
        f"one multi-row insert per batch ({ledger_ms} ms per {res['batch_size']} runs "
        f"here): about {ledger_cap:,.0f} items/s ({ledger_cap / rate:,.0f} workers' worth) "
        f"for one SQLite writer. Here the {first} saturates first. On a cluster both must "
        "be PostgreSQL anyway (SQLite on a network file system has no safe locking), where "
        "concurrent writers and batched inserts move both caps up, but they stay one "
        "shared database per job. (3) **Model loading** is paid once per actor, in "
        f"parallel, so it adds a constant ({one_worker['startup_seconds']} s before the "
        "first batch here, with the driver's own validation load) rather than growing with "
        "N; it recurs when actors restart or an autoscaler adds them, and every node must "
        "read the skill folders (a shared file system, or a model package installed on "
        "each node). (4) The **driver** reads every input and writes the one output file; "
        "JSON lines go at hundreds of thousands per second, so it holds for hundreds of "
        "workers, beyond which the actors should write output shards themselves (Ray Data "
        "`write_json`), which this engine does not do yet."
    )
