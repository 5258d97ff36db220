"""A simulated migration, end to end (issue 18): an app's LLM traffic moves to small models.

The app (:mod:`bench._migration_app`) sends BANKING77 queries and SROIE receipts, each
with one fixed prompt, to "GPT-4", which is the local Qwen2.5-Coder-1.5B behind a caching
shim (:mod:`bench._migration_llm`). The traffic is replayed in its seeded time order
through a real ``slmstack proxy`` subprocess (uvicorn, SQLite ledger in
``bench/out/migration/``), phase by phase (:mod:`bench._migration_phases`):

1. record: the first ``--n-record`` calls go through the proxy, which records them;
2. ``slmstack discover --json``: both tasks must be found, with no false merge (each
   task's members are checked against the truth);
3. ``slmstack distill --task T`` for each task: the student trained on the recorded answers;
4. shadow: the proxy restarted with ``--tasks ... --shadow T=DIR``; the next
   ``--n-shadow`` calls are answered by the LLM and compared with the students;
5. ``slmstack promote --task T``: the gate, and the cascade threshold tuned on the shadow rows;
6. serve: the proxy answers the promoted tasks from their students (cascade back to the LLM
   below the threshold, an audit sample still sent to the LLM), for the rest of the traffic.

Then ``slmstack migration report``. The LLM answers the recorded and shadowed calls
once, through the shim, in a *reference pass* that runs first (in chunks, each under the
shared CPU lock; ``--reference all`` includes the served calls too): it fills the shim's
cache, so the proxy's phases replay at full speed. The served calls reach the LLM through
the proxy (cascade, audits); ``--complete-reference`` then asks it the rest, for scoring
only. Nothing is tuned on the served stretch: the student kind, the threshold and the
gate come from the recorded and shadowed calls. The replay (phases 1-6) holds the CPU
lock once, from the record phase to the end of the serve phase.

    .venv/bin/python bench/migration.py --probe     # s/call on 5 calls of each kind
    # the run of bench/results/migration.json (takes the lock itself; do not wrap in flock):
    nice -n 5 .venv/bin/python bench/migration.py --n-calls 800 --n-record 400 \
        --n-shadow 220 --reference replay --no-complete-reference --write-results
    # the same replay with the gate at 0.7 (bench/results/migration-gate070.json):
    nice -n 5 .venv/bin/python bench/migration.py --n-calls 800 --n-record 400 \
        --n-shadow 220 --reference replay --promote-args "--min-agreement 0.7" \
        --variant gate070 --write-results
    .venv/bin/python bench/migration.py --fake-llm ...  # dry run: gold-made answers, no model
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx

from _machine import cpu_lock, machine
from _migration_app import Request, traffic
from _migration_llm import LLMServer, Shim, ShimServer
from _migration_score import score

OUT = Path(__file__).resolve().parent / "out" / "migration"
RESULTS = Path(__file__).resolve().parent / "results" / "migration.json"
CHUNK_S = 600.0  # hold the CPU lock at most this long at a time in the reference pass


def reference_pass(reqs: list[Request], shim: Shim, url: str, label: str = "reference",
                   chunk_s: float = CHUNK_S) -> dict[str, Any]:  # fmt: skip
    """Ask the LLM (through the shim) every call not yet cached, in locked chunks."""
    todo = [r for r in reqs if not shim.is_cached(r.body)]
    print(f"{label}: {len(reqs) - len(todo)} of {len(reqs)} calls cached, {len(todo)} to ask",
          flush=True)  # fmt: skip
    locked_s, waited_s = 0.0, 0.0
    shim.phase = label
    with httpx.Client(timeout=1800) as client:
        while todo:
            with nullcontext(0.0) if shim.fake else cpu_lock() as waited:
                waited_s += waited
                start = time.monotonic()
                while todo and time.monotonic() - start < chunk_s:
                    r = todo.pop(0)
                    client.post(f"{url}/chat/completions", json=r.body).raise_for_status()
                    done = len(reqs) - len(todo)
                    if done % 25 == 0:
                        print(
                            f"  {done}/{len(reqs)} ({time.monotonic() - start:.0f} s)", flush=True
                        )
                locked_s += time.monotonic() - start
            if todo:
                time.sleep(5)  # let a waiting job take the lock
    return {"locked_s": round(locked_s, 1), "lock_wait_s": round(waited_s, 1)}


def probe(shim: Shim, url: str, reqs: list[Request]) -> None:
    """Seconds per live call on the first 5 calls of each kind (run before sizing)."""
    picked = [r for r in reqs if r.kind == "banking"][:5] + [
        r for r in reqs if r.kind == "receipt"
    ][:5]
    reference_pass(picked, shim, url, label="probe")
    live = {c["key"]: c for c in shim.calls if c["live"]}
    from _migration_llm import body_key

    for kind in ("banking", "receipt"):
        ms = [
            live[body_key(r.body)]["ms"]
            for r in picked
            if r.kind == kind and body_key(r.body) in live
        ]
        toks = [
            live[body_key(r.body)]["usage"]
            for r in picked
            if r.kind == kind and body_key(r.body) in live
        ]
        if ms:
            each = [round(m / 1000, 1) for m in ms]
            print(f"{kind}: {len(ms)} live calls, s/call {each}, median "
                  f"{statistics.median(ms) / 1000:.1f} s; tokens {toks}", flush=True)  # fmt: skip


def run_phases(args: argparse.Namespace, reqs: list[Request], shim: Shim, url: str,
               out: Path) -> dict[str, Any]:  # fmt: skip
    """Phases 1-6 through the proxy and the CLI, then the scoring (see the module docstring)."""
    from _migration_phases import (
        discover,
        distill,
        fresh_ledger,
        promote,
        record,
        replay,
        serve_flags,  # fmt: skip
        shadow_flags,
        slmstack,
    )

    n1, n2 = args.n_record, args.n_record + args.n_shadow
    recorded, shadowed, served = reqs[:n1], reqs[n1:n2], reqs[n2:]
    ledger = fresh_ledger(out / "ledger.db")
    (out / "cli.log").write_text("")
    report: dict[str, Any] = {
        "sizes": {
            "banking": sum(r.kind == "banking" for r in reqs),
            "receipts": sum(r.kind == "receipt" for r in reqs),
            "record": _kinds(recorded),
            "shadow": _kinds(shadowed),
            "serve": _kinds(served),
        }
    }
    shim.phase = "record"
    report["record"] = record(recorded, url, ledger, out, shim)
    report["discover"] = found = discover(ledger, reqs, out)
    if args.until == "discover":
        return report
    tasks_file = out / "tasks.json"
    students = distill(found, ledger, tasks_file, out)
    report["distill"] = students["reports"]
    folders: dict[str, Path] = students["folders"]
    report["shadow"] = replay(shadowed, url, ledger, out, shim, "shadow",
                              shadow_flags(tasks_file, folders))  # fmt: skip
    report["promote"] = promote(folders, ledger, out, args)
    report["serve"] = replay(served, url, ledger, out, shim, "serve",
                             shadow_flags(tasks_file, folders) + serve_flags(args),
                             settle_s=3.0)  # fmt: skip
    html = out / "migration-report.html"
    done = slmstack(["migration", "report", "--ledger", ledger, "--out", str(html), "--json"],
                    out / "cli.log", check=False)  # fmt: skip
    try:
        report["migration_report"] = json.loads(done.stdout)
    except ValueError:
        report["migration_report"] = {"rc": done.returncode, "stderr": done.stderr[-1500:]}
    if args.complete_reference:  # the LLM's answer to the served calls, for scoring only
        shim.phase = "reference-completion"
        report["reference_completion"] = reference_pass(
            served, shim, url, label="reference-completion", chunk_s=args.chunk_s
        )
    report["scores"] = score(recorded, served, report, shim, tasks_file, folders, shadowed)
    (out / "answers.json").write_text(json.dumps(report["serve"].pop("answers")) + "\n")
    report["shadow"].pop("answers")
    report["record"].pop("ms")
    return report


def _kinds(reqs: list[Request]) -> dict[str, int]:
    return {"banking": sum(r.kind == "banking" for r in reqs),
            "receipt": sum(r.kind == "receipt" for r in reqs)}  # fmt: skip


def fake_llm(reqs: list[Request]) -> Any:
    """Answers made from the gold, for a dry run of the harness (no model): 80 % right."""
    import random

    from _migration_app import labels
    from _migration_llm import body_key

    names, by_key = labels(), {body_key(r.body): r for r in reqs}

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        r = by_key[body_key(body)]
        rng = random.Random(r.i)
        if r.kind == "banking":
            text = r.gold if rng.random() < 0.8 else rng.choice(names)
        else:
            text = json.dumps(r.gold)
        usage = {"prompt_tokens": 400, "completion_tokens": 4 if r.kind == "banking" else 80}
        return {"id": f"fake-{r.i}", "object": "chat.completion", "created": 0, "model": "fake",
                "usage": {**usage, "total_tokens": sum(usage.values())},
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}]}  # fmt: skip

    return answer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-banking", type=int, default=900)
    ap.add_argument("--n-receipts", type=int, default=40)
    ap.add_argument("--n-record", type=int, default=480, help="calls recorded (phase 1)")
    ap.add_argument("--n-shadow", type=int, default=240, help="calls shadowed (phase 4)")
    ap.add_argument(
        "--n-calls",
        type=int,
        default=None,
        help="replay only the first N calls of the time order (all by default)",
    )
    ap.add_argument(
        "--chunk-s",
        type=float,
        default=CHUNK_S,
        help="hold the CPU lock at most this long at a time in the reference pass",
    )
    ap.add_argument(
        "--reference",
        choices=["all", "replay"],
        default="all",
        help="ask the LLM every call before the replay, or only the recorded and "
        "shadowed ones (the served ones then reach it only through the proxy)",
    )
    ap.add_argument(
        "--complete-reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after serving, ask the LLM the served calls it was not asked (for scoring only)",
    )
    ap.add_argument("--probe", action="store_true", help="time 5 calls of each kind and stop")
    ap.add_argument("--until", choices=["reference", "discover", "all"], default="all")
    ap.add_argument("--promote-args", default="", help="extra `slmstack promote` options")
    ap.add_argument("--serve-args", default="", help="extra `slmstack proxy` options (serve)")
    ap.add_argument("--fake-llm", action="store_true",
                    help="dry run of the harness: answers made from the gold (80%% right), no "
                    "model, in bench/out/migration/fake/")  # fmt: skip
    ap.add_argument("--variant", default=None,
                    help="write this run's phases to bench/out/migration/variants/NAME "
                    "(the LLM cache is shared)")  # fmt: skip
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args()
    args.promote_flags = shlex.split(args.promote_args)
    args.serve_flags = shlex.split(args.serve_args)
    base = OUT / "fake" if args.fake_llm else OUT
    out = base / "variants" / args.variant if args.variant else base
    out.mkdir(parents=True, exist_ok=True)
    reqs = traffic(args.n_banking, args.n_receipts)[: args.n_calls]
    server = LLMServer(base / "server.log")
    shim = Shim(base / "llm_cache.jsonl", server, fake_llm(reqs) if args.fake_llm else None)
    try:
        with ShimServer(shim) as front:
            if args.probe:
                probe(shim, front.url, reqs)
                return
            n_ref = args.n_record + args.n_shadow if args.reference == "replay" else len(reqs)
            ref = reference_pass(reqs[:n_ref], shim, front.url, chunk_s=args.chunk_s)
            server.stop()  # the phases replay from the cache
            if args.until == "reference":
                return
            report = run_phases(args, reqs, shim, front.url, out)
            report["reference_pass"] = ref
            report["machine"] = machine()
            report["llm_server"] = server.command or "(all answers cached; server not started)"
            report["command"] = "nice -n 5 .venv/bin/python " + " ".join(sys.argv)
            text = json.dumps(report, indent=1, default=str)
            (out / "report.json").write_text(text + "\n")
            if "scores" in report:
                from _migration_section import section

                (out / "section.md").write_text(section(report))
                print(section(report))
            if args.write_results:
                results = (
                    RESULTS.with_name(f"migration-{args.variant}.json") if args.variant else RESULTS
                )
                results.write_text(text + "\n")
                print(f"wrote {results}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
