"""Train the support-desk stack from data/ (cached) and run it on a few queries.

    python examples/support-desk/run.py              # route, answer and trace per query
    python examples/support-desk/run.py --check      # also compare with expected.jsonl
    python examples/support-desk/run.py "My thermostat will not turn on"
    python examples/support-desk/run.py --llm http://127.0.0.1:8080/v1   # with an LLM tier

The first run trains every skill from data/ into .slmstack-cache/ (a few minutes on two
CPU cores); later runs load them from there. Escalations go to the inbox in the same
folder: see them with ``slmstack inbox list --db sqlite:///examples/support-desk/.slmstack-cache/inbox.db``.

The LLM tier (``--llm URL`` or ``$SLMSTACK_DEMO_LLM_URL``): a local OpenAI-compatible
server answers the English messages whose intent the classifier is unsure about, in place
of the "intent unclear" hand-off to a person. It sits there, and not behind the FAQ or the
troubleshooter, because those escalate for want of a source (an FAQ entry, a manual): an
LLM without the source would make up the shop's policies and fixes, while an unclear
message needs what an LLM does well and an intent classifier cannot: read an open-ended
message and ask the customer the question that makes it actionable. The server is priced
by its machine time (``--llm-machine``, by default the workflow's machine): a model you
serve yourself has no list price, and the honest cost of a call is the time it holds the
machine. Nothing is sent to an LLM unless the URL is given, no API key is sent, and a URL
that does not answer stops the demo: it never falls back to the human tier quietly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from rich.console import Console
from rich.markup import escape

from slmstack.costs import LedgerRow, ModelPrice, PriceTable, SpendRow
from slmstack.errors import BackendError, SlmstackError
from slmstack.workflows import (
    CascadeStep,
    EscalateStep,
    Result,
    SkillLike,
    Workflow,
    load_workflow,
)
from slmstack.workflows.render import trace_tree

HERE = Path(__file__).resolve().parent
LLM_ENV = "SLMSTACK_DEMO_LLM_URL"
LLM_TIER = "llm"  # the backend name the tier escalates to; its ledger step is "escalate → llm"
UNCLEAR = "intent unclear"  # the reason of the hand-off the LLM tier takes over
START_SERVER = (
    "python -m llama_cpp.server --model <gguf> --model_alias smollm2 --port 8080 "
    "(SmolLM2's GGUF: python -c \"from slmstack.models import resolve; "
    "print(resolve('smollm2').weights)\")"
)
# Written for the smallest model the demo runs with (SmolLM2-135M): one short instruction
# and one example reply; longer instructions made it apologise instead of asking.
LLM_SYSTEM = (
    "You reply to customers of Brightlane Home, an electronics shop, when we cannot tell what "
    "they need. Ask them for the details we need: the order number, the product, what went "
    "wrong. Be brief and friendly. Never promise refunds, dates or prices.\n\n"
    "Example\nCustomer: My thing is not working.\n"
    "Reply: Thanks for writing! Which product is it, what is your order number, and what "
    "happens when you use it?"
)
# The context: the intent classifier's guess, which was too unsure to route on.
LLM_PROMPT = (
    "(Our router's unsure guess at the topic: {intent}, confidence {intent.confidence})\n"
    "Customer: {input}\nReply:"
)


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


# ---------------------------------------------------------------------- the LLM tier
def served_model(url: str, *, transport: Any = None, timeout_s: float = 5.0) -> str:
    """The model the OpenAI-compatible server at ``url`` serves (the first of ``/models``).

    Raises:
        BackendError: nothing answers at ``url``, or not as an OpenAI-compatible API; the
            message names the URL and how to start a local server.
    """
    import httpx2

    problem = None
    try:
        with httpx2.Client(transport=transport, timeout=timeout_s) as client:
            response = client.get(f"{url.rstrip('/')}/models")
        if response.status_code != 200:
            problem = f"answered HTTP {response.status_code} on /models"
        else:
            return str(response.json()["data"][0]["id"])
    except httpx2.HTTPError as exc:
        problem = f"could not be reached ({exc})"
    except (ValueError, KeyError, IndexError, TypeError):
        problem = "answered /models with something that is not an OpenAI model list"
    raise BackendError(
        f"the LLM tier's server at {url} {problem}. Start a local OpenAI-compatible server "
        f"first, for example: {START_SERVER}, and pass its API root (ending in /v1) as --llm "
        f"or ${LLM_ENV}; or run without --llm (and unset ${LLM_ENV}) to hand unclear "
        "messages to a person."
    )


def llm_backend(url: str, *, model: str | None = None, transport: Any = None) -> Any:
    """An OpenAI-compatible backend for the local server at ``url``, checked to answer.

    ``model`` defaults to the one the server reports. No API key is sent: this is a
    server you run, not a paid API.
    """
    from slmstack.backends.openai_compat import OpenAICompatBackend

    served = served_model(url, transport=transport)  # fails now, not halfway through a run
    return OpenAICompatBackend(
        model or served,
        base_url=url,
        api_key_env=None,
        timeout_s=300,
        retries=1,
        transport=transport,
    )


def with_llm_tier(workflow: Workflow, backend: Any, *, machine: str | None = None) -> Workflow:
    """``workflow`` with the LLM tier in place of its "intent unclear" hand-off.

    The desk's first step is the cascade ``intent → person``; it becomes ``intent → LLM``,
    the LLM asked with the message and the classifier's low-confidence guess. Everything
    else (the skills, the inbox, the ledger, the prices) is the loaded workflow's. The
    server's model is priced by its time on ``machine`` (default: the workflow's).

    Raises:
        SlmstackError: workflow.yaml no longer has that cascade (the tier needs a new home).
    """
    desk = workflow.blocks.get("desk") or []
    cascade = desk[0] if desk else None
    if not (
        isinstance(cascade, CascadeStep)
        and isinstance(cascade.tiers[-1], EscalateStep)
        and cascade.tiers[-1].reason == UNCLEAR
    ):
        raise SlmstackError(
            f"{workflow.source}: block 'desk' no longer starts with a cascade ending in "
            f"`escalate: {{reason: {UNCLEAR}}}`, where the LLM tier goes; update "
            "with_llm_tier in run.py to the new layout"
        )
    tier = EscalateStep(UNCLEAR, to=LLM_TIER, system=LLM_SYSTEM, prompt=LLM_PROMPT, max_tokens=80)
    steps = [CascadeStep([*cascade.tiers[:-1], tier], threshold=cascade.thresholds), *desk[1:]]
    prices = workflow.meter().prices
    machine = machine or prices.default_machine
    source = f"the demo's LLM server, by its time on {machine}"
    served = PriceTable(
        models={backend.name: ModelPrice(backend.name, machine=machine, source=source)},
        machines={},
        default_machine="",
        version=f"--llm {backend.name} on {machine}",
    )
    priced = prices.merged(served)
    priced.check()
    return Workflow(
        workflow.steps,
        skills=workflow.skills,
        name=workflow.name,
        backends={**workflow.backends, LLM_TIER: backend},
        blocks={**workflow.blocks, "desk": steps},
        inbox=workflow.inbox,
        source=workflow.source,
        ledger=workflow.ledger,
        prices=priced,
    )


def spend_by_step(workflow: Workflow, rows: Sequence[LedgerRow]) -> dict[str, SpendRow]:
    """This run's ledger rows summed by step with :func:`slmstack.costs.spend_report`.

    The ledger keeps every run ever made; the rows of this run are put in a ledger of
    their own (in memory) so that the report sums this run alone. Keys are step names.
    """
    from slmstack.costs import Ledger, spend_report

    with Ledger("sqlite:///:memory:") as part:
        part.append(rows)
        report = spend_report(part, by="step", compare_to=None, prices=workflow.meter().prices)
    prefix = f"{workflow.name}: "
    return {r.key.removeprefix(prefix): r for r in [*report.rows, report.total]}


# ---------------------------------------------------------------------- the cost summary
def print_cost(console: Console, workflow: Workflow, stamp: str) -> None:
    """What this run cost, from the ledger, beside the same traffic at GPT-4's prices,
    and the LLM tier's share of the requests and of the cost when there is one."""
    from slmstack.costs.compare import break_even
    from slmstack.costs.report import money

    book = workflow.ledger
    if book is None:
        return
    rows = [r for r in book.rows() if r.request_id.startswith(stamp)]
    runs = [r for r in rows if r.kind == "run"]
    if not runs:
        return
    prices = workflow.meter().prices
    seconds = sum(r.compute_s for r in runs)
    be = break_even(rows, workflow=workflow.name, prices=prices, llm="gpt-4",
                    requests_per_day=10_000, training=Decimal(0))  # fmt: skip
    stack = sum((r.cost for r in runs), Decimal(0))
    llm = be.llm_per_request * len(runs)
    to_person = len({r.request_id for r in rows if r.kind == "escalate" and r.decision == "human"})
    plural = "" if len(runs) == 1 else "s"
    console.print(
        f"\n[bold]Cost of this run[/] (from the ledger): {len(runs)} request{plural}, "
        f"{money(stack)} of compute ({seconds:.2f} s on {prices.default_machine}); "
        f"{to_person / len(runs):.0%} handed to a person.\n"
        f"The same traffic sent to GPT-4 ({be.prompt_tokens} prompt + {be.completion_tokens} "
        f"answer tokens a request at $0.03/$0.06 per 1k): {money(llm)}, "
        f"{be.times_cheaper:,.0f}x more. Per 1M requests: {money(be.stack_per_million)} "
        f"against {money(be.llm_per_million)}.\n"
        f"Prices: {prices.version}. Explore: slmstack cost report --ledger {escape(book.url)} "
        f"--by step"
    )
    backend = workflow.backends.get(LLM_TIER)
    if backend is None:
        return
    by_step = spend_by_step(workflow, rows)
    tier, total = by_step.get(f"escalate → {LLM_TIER}"), by_step["total"]
    where = escape(f"{backend.name} at {getattr(backend, 'base_url', '?')}")  # OpenAICompat
    if tier is None:
        console.print(f"[bold]LLM tier[/] ({where}): no request needed it.")
        return
    share = tier.cost / total.cost if total.cost else Decimal(0)
    console.print(
        f"[bold]LLM tier[/] ({where}, priced as its time on "
        f"{prices.model(backend.name).machine}): {tier.requests} of {total.requests} requests "
        f"({tier.requests / total.requests:.0%}), {money(tier.cost)} of {money(total.cost)} "
        f"({share:.0%} of the cost), {tier.compute_s:.2f} s, {tier.tokens_in} prompt + "
        f"{tier.tokens_out} answer tokens."
    )


# ---------------------------------------------------------------------- main
def main(
    argv: list[str] | None = None,
    *,
    skills: Mapping[str, SkillLike] | None = None,
    transport: Any = None,
) -> int:
    """Run the demo; ``skills`` and ``transport`` are for tests (used instead of the
    trained skills and of the network)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("texts", nargs="*", help="queries (default: data/queries.jsonl)")
    parser.add_argument("--cache", type=Path, default=HERE / ".slmstack-cache")
    parser.add_argument("--check", action="store_true", help="compare with expected.jsonl")
    parser.add_argument("--no-trace", action="store_true", help="one line per query")
    parser.add_argument(
        "--llm", metavar="URL", default=os.environ.get(LLM_ENV) or None,
        help=f"a local OpenAI-compatible server (API root, ending in /v1) as the tier for "
        f"unclear messages; default ${LLM_ENV}, none when unset",
    )  # fmt: skip
    parser.add_argument("--llm-model", help="the model to ask (default: the server's own)")
    parser.add_argument(
        "--llm-machine", help="the priced machine the server runs on (default: the workflow's)"
    )
    args = parser.parse_args(argv)

    console = Console()
    try:
        backend = (
            llm_backend(args.llm, model=args.llm_model, transport=transport) if args.llm else None
        )
        workflow = load_workflow(
            HERE / "workflow.yaml",
            cache_dir=args.cache,
            skills=skills,
            inbox=f"sqlite:///{args.cache / 'inbox.db'}",
            ledger=f"sqlite:///{args.cache / 'ledger.db'}",
        )
        if backend is not None:
            workflow = with_llm_tier(workflow, backend, machine=args.llm_machine)
    except SlmstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    texts = args.texts or [
        json.loads(line)["text"]
        for line in (HERE / "data" / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    got = []
    stamp = f"demo-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    for i, text in enumerate(texts):
        try:
            result = workflow.run(text, key=f"{stamp}#{i}")
        except BackendError as exc:  # the LLM tier failed: say so, never hand off quietly
            print(f"error: the LLM tier failed on {text!r}: {exc}", file=sys.stderr)
            return 1
        got.append(summary(result))
        # The customer's text, the answer and the why are text, never markup: "[/]" in a
        # message or "[/INST]" in a model's reply would stop the demo after the run.
        route = escape(" → ".join(result.route))
        console.print(
            f"\n[bold]{escape(text)}[/]\n  route: {route}\n  answer: {escape(result.answer)}"
        )
        if result.escalation is not None:
            e = result.escalation
            to = f"packet {e.packet_id}" if e.to == "human" else f"answered by the {e.to} tier"
            console.print(f"  escalated: {escape(e.reason)} ({escape(e.why)}), {escape(to)}")
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
            console.print(
                f"[red]mismatch[/] expected {escape(str(e))}\n          got      {escape(str(g))}"
            )
        console.print(f"[red]check failed[/]: {len(wrong)} of {len(expected)} queries differ")
        return 1
    console.print(f"[green]check passed[/]: {len(got)} queries as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
