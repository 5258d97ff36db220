"""Train the support-desk stack from data/ (cached) and run it on a few queries.

    python examples/support-desk/run.py              # route, answer and trace per query
    python examples/support-desk/run.py --check      # also compare with expected.jsonl
    python examples/support-desk/run.py "My thermostat will not turn on"

The first run trains every skill from data/ into .slmstack-cache/ (a few minutes on two
CPU cores); later runs load them from there. Escalations go to the inbox in the same
folder: see them with ``slmstack inbox list --db sqlite:///examples/support-desk/.slmstack-cache/inbox.db``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from rich.console import Console

from slmstack.workflows import Result, Workflow, load_workflow
from slmstack.workflows.render import trace_tree

HERE = Path(__file__).resolve().parent


def summary(result: Result) -> dict[str, object]:
    """What the expected-output check compares: language, intent, status, FAQ entry, and
    for account requests which details were missing."""
    out = result.outputs
    answer = out.get("answer")
    missing = answer.data.get("missing") if answer is not None else None
    return {
        "text": result.input,
        "language": out["lang"].label if "lang" in out else None,
        "intent": out["intent"].label if "intent" in out else None,
        "status": result.status,
        "reason": result.escalation.reason if result.escalation else None,
        "faq_entry": answer.label if answer is not None and answer.label else None,
        "missing": missing,
    }


def print_cost(console: Console, workflow: Workflow, stamp: str) -> None:
    """What this run cost, from the ledger, beside the same traffic at GPT-4's prices."""
    from slmstack.costs.compare import break_even
    from slmstack.costs.report import money

    book = workflow.ledger
    if book is None:
        return
    rows = [r for r in book.rows() if r.request_id.startswith(stamp)]
    runs = [r for r in rows if r.kind == "run"]
    prices = workflow.meter().prices
    seconds = sum(r.compute_s for r in runs)
    be = break_even(rows, workflow=workflow.name, prices=prices, llm="gpt-4",
                    requests_per_day=10_000, training=Decimal(0))  # fmt: skip
    stack = sum((r.cost for r in runs), Decimal(0))
    llm = be.llm_per_request * len(runs)
    console.print(
        f"\n[bold]Cost of this run[/] (from the ledger): {len(runs)} requests, "
        f"{money(stack)} of compute ({seconds:.2f} s on {prices.default_machine}); "
        f"{be.escalation_rate:.0%} escalated to a person.\n"
        f"The same traffic sent to GPT-4 ({be.prompt_tokens} prompt + {be.completion_tokens} "
        f"answer tokens a request at $0.03/$0.06 per 1k): {money(llm)}, "
        f"{be.times_cheaper:,.0f}x more. Per 1M requests: {money(be.stack_per_million)} "
        f"against {money(be.llm_per_million)}.\n"
        f"Prices: {prices.version}. Explore: slmstack cost report --ledger {book.url} "
        f"--by step"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("texts", nargs="*", help="queries (default: data/queries.jsonl)")
    parser.add_argument("--cache", type=Path, default=HERE / ".slmstack-cache")
    parser.add_argument("--check", action="store_true", help="compare with expected.jsonl")
    parser.add_argument("--no-trace", action="store_true", help="one line per query")
    args = parser.parse_args(argv)

    console = Console()
    workflow = load_workflow(
        HERE / "workflow.yaml",
        cache_dir=args.cache,
        inbox=f"sqlite:///{args.cache / 'inbox.db'}",
    )
    texts = args.texts or [
        json.loads(line)["text"]
        for line in (HERE / "data" / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    got = []
    stamp = f"demo-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    for i, text in enumerate(texts):
        result = workflow.run(text, key=f"{stamp}#{i}")
        got.append(summary(result))
        route = " → ".join(result.route)
        console.print(f"\n[bold]{text}[/]\n  route: {route}\n  answer: {result.answer}")
        if result.escalation is not None:
            e = result.escalation
            console.print(f"  escalated: {e.reason} ({e.why}), packet {e.packet_id}")
        if not args.no_trace:
            console.print(trace_tree(result))
    print_cost(console, workflow, stamp)
    if not args.check:
        return 0
    expected = [
        json.loads(line)
        for line in (HERE / "expected.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    wrong = [(e, g) for e, g in zip(expected, got, strict=False) if e != g]
    if len(expected) != len(got) or wrong:
        for e, g in wrong:
            console.print(f"[red]mismatch[/] expected {e}\n          got      {g}")
        console.print(f"[red]check failed[/]: {len(wrong)} of {len(expected)} queries differ")
        return 1
    console.print(f"[green]check passed[/]: {len(got)} queries as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
