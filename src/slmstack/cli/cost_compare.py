"""``slmstack cost compare``: the break-even report of a workflow against its LLM."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from slmstack.cli.common import (
    check_html_target,
    cli_command,
    dollars,
    out,
    print_json,
    write_page,
)
from slmstack.errors import ConfigError


@cli_command
def compare(
    workflow: Annotated[Path, typer.Argument(help="The workflow YAML (it names its ledger).")],
    requests_per_day: Annotated[int, typer.Option(min=1, help="The traffic to cost, per day.")],
    llm: Annotated[str, typer.Option(help="The LLM every request would go to.")] = "gpt-4",
    ledger: Annotated[
        str | None, typer.Option(help="Ledger URL or SQLite file (default: the workflow's).")
    ] = None,
    training_machine: Annotated[
        str | None,
        typer.Option(
            help="The price-table machine the skills were trained on (default: the "
            "workflow's serving machine).",
        ),
    ] = None,
    teacher_cost: Annotated[
        str, typer.Option(help="Dollars the teacher cost when skills were distilled.")
    ] = "0",
    prompt_tokens: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="LLM prompt tokens per request (default: measured text "
            "length + --prompt-overhead).",
        ),
    ] = None,
    prompt_overhead: Annotated[
        int, typer.Option(min=0, help="Instruction tokens an LLM prompt adds to the text.")
    ] = 150,
    completion_tokens: Annotated[
        int, typer.Option(min=0, help="LLM answer tokens per request.")
    ] = 50,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write a page with a plot.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Monthly cost, cost per 1M requests and break-even volume: the stack against the LLM."""
    from slmstack.costs import Ledger
    from slmstack.costs.compare import break_even
    from slmstack.workflows import load_workflow

    check_html_target(html_out)
    teacher = dollars(teacher_cost, "--teacher-cost")
    with load_workflow(workflow) as wf:  # read, then closed: its pools, its ledger
        meter = wf.meter()
        url = ledger or meter.ledger_url  # not wf.ledger: that would create a missing one
        if url is None:
            raise ConfigError(f"{workflow} keeps no ledger; add `ledger: sqlite:///ledger.db` to "
                              "it and run it, or pass --ledger")  # fmt: skip
        url = url if "://" in url else f"sqlite:///{url}"
        provenances = [getattr(s, "provenance_", None) for s in wf.skills.values()]
        seconds = sum(float(getattr(p, "seconds", 0.0)) for p in provenances)
        trained_on = training_machine or meter.machine
        training = meter.prices.compute_cost(trained_on, seconds) + teacher  # or names it unknown
    book = Ledger(url, create=False)
    try:
        result = break_even(
            book.rows(workflow=wf.name), workflow=wf.name, prices=meter.prices, llm=llm,
            requests_per_day=requests_per_day, training=training,
            prompt_overhead=prompt_overhead, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )  # fmt: skip
    finally:
        book.close()
    summary = _summary(result, seconds, trained_on, meter.prices.version)
    if html_out is not None:
        write_page(html_out, _page(result, summary))
    if json_out:
        print_json(summary)
        return
    _print(summary)


def _summary(r: Any, seconds: float, machine: str, prices: str) -> dict[str, Any]:
    from slmstack.costs.report import usd

    be = r.break_even_requests
    return {
        "workflow": r.workflow, "runs_in_ledger": r.runs,
        "escalation_rate": round(r.escalation_rate, 4), "llm": r.llm,
        "llm_tokens_per_request": [r.prompt_tokens, r.completion_tokens],
        "per_request": {"llm": usd(r.llm_per_request), "stack": usd(r.stack_per_request)},
        "per_1m_requests": {"llm": usd(r.llm_per_million), "stack": usd(r.stack_per_million)},
        "monthly": {"requests_per_day": r.requests_per_day, "llm": usd(r.llm_monthly),
                    "stack": usd(r.stack_monthly)},
        "training": {"usd": usd(r.training), "skill_training_seconds": round(seconds, 1),
                     "machine": machine},
        "times_cheaper": None if r.times_cheaper is None else _factor(r.times_cheaper),
        "break_even_requests": None if be is None else int(be),
        "break_even_days": None if be is None else round(int(be) / r.requests_per_day, 3),
        "prices": prices,
    }  # fmt: skip


def _factor(factor: Decimal) -> str:
    """One decimal from 1 up; three significant digits below, where a dearer stack is."""
    return str(round(factor, 1)) if factor >= 1 else format(factor, ".3g")


def _when(s: dict[str, Any]) -> str:
    be = s["break_even_requests"]
    if be is None:
        return "never: the stack costs as much as the LLM per request, or more"
    days = s["break_even_days"]  # rounded to 3 places: 1 request of 10,000 a day is 0.0
    when = "within the first day" if days == 0 else f"{days} day{'' if days == 1 else 's'}"
    return f"after {be:,} request{'' if be == 1 else 's'} ({when} at this volume)"


def _print(s: dict[str, Any]) -> None:
    from rich.table import Table

    from slmstack.costs.report import money, times

    def m(v: str) -> str:
        return money(Decimal(v))

    table = Table("", f"all to {s['llm']}", "slmstack stack", title=f"{s['workflow']}: cost")
    table.add_row("per request", m(s["per_request"]["llm"]), m(s["per_request"]["stack"]))
    table.add_row("per 1M requests", m(s["per_1m_requests"]["llm"]),
                  m(s["per_1m_requests"]["stack"]))  # fmt: skip
    table.add_row(f"per month at {s['monthly']['requests_per_day']:,}/day",
                  m(s["monthly"]["llm"]), m(s["monthly"]["stack"]))  # fmt: skip
    table.add_row(f"training (once, on {s['training']['machine']})", "-", m(s["training"]["usd"]))
    out.print(table)
    # From the exact ratio: the per-request figures are rounded to the nano-dollar, and a
    # stack of templates costs a fraction of one.
    factor = s["times_cheaper"]
    versus = (
        "the stack costs nothing per request"
        if factor is None
        else "the LLM costs nothing per request"
        if Decimal(factor) == 0
        else f"{times(Decimal(factor))} per request"
    )
    out.print(f"{versus}; break-even {_when(s)}; measured "
              f"escalation rate {s['escalation_rate']:.1%} over {s['runs_in_ledger']} runs. "
              f"Prices: {s['prices']}.", highlight=False)  # fmt: skip


def _page(r: Any, s: dict[str, Any]) -> str:
    import html

    from slmstack.costs.html import image, new_figure, page, png_base64, table

    fig = new_figure((8, 4), "The break-even plot")
    ax = fig.add_subplot()
    be = r.break_even_requests
    horizon = max(int(be or 0) * 2, r.requests_per_day * 30, 10)
    xs = [horizon * i / 50 for i in range(51)]
    ax.plot(xs, [float(r.llm_per_request) * x for x in xs], label=f"all to {r.llm}")
    ax.plot(xs, [float(r.training + r.stack_per_request * Decimal(x)) for x in xs],
            label="slmstack (training included)")  # fmt: skip
    if be is not None:
        ax.axvline(float(be), linestyle="--", color="grey", label="break-even")
    ax.set_xlabel("requests")
    ax.set_ylabel("cumulative US$")
    ax.legend()
    rows = [["per request", s["per_request"]["llm"], s["per_request"]["stack"]],
            ["per 1M requests", s["per_1m_requests"]["llm"], s["per_1m_requests"]["stack"]],
            [f"per month at {r.requests_per_day:,}/day", s["monthly"]["llm"],
             s["monthly"]["stack"]],
            [f"training (once, on {s['training']['machine']})", "-",
             s["training"]["usd"]]]  # fmt: skip
    body = (
        f"<p>{s['runs_in_ledger']} runs in the ledger · escalation rate "
        f"{s['escalation_rate']:.1%} · break-even {html.escape(_when(s))} · "
        f"prices {html.escape(s['prices'])}</p>"
        + table(["US$", f"all to {r.llm}", "slmstack"], rows)
        + image("Cumulative cost", png_base64(fig))
    )
    return page(f"{r.workflow}: the stack against {r.llm}", body)
