"""``slmstack cost report``: what the workflows spent, from the ledger, beside the LLM."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from slmstack.cli.common import (
    check_html_target,
    cli_command,
    err,
    out,
    print_json,
    write_page,
)
from slmstack.cli.cost_compare import compare
from slmstack.errors import ConfigError

app = typer.Typer(help="What workflows cost, from the ledger.", no_args_is_help=True)


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option} must be a date as YYYY-MM-DD; got {value!r}") from None


@app.command("report")
@cli_command
def report(
    ledger: Annotated[
        str,
        typer.Option(
            "--ledger",
            help="Database URL of the ledger (sqlite:///PATH, postgresql+psycopg://...) or a "
            "SQLite file: a workflow's `ledger:`.",
        ),
    ],
    since: Annotated[str | None, typer.Option(help="First UTC day, YYYY-MM-DD.")] = None,
    until: Annotated[str | None, typer.Option(help="Last UTC day, YYYY-MM-DD.")] = None,
    by: Annotated[str, typer.Option(help="Group by workflow, step, model or day.")] = "workflow",
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML page.")
    ] = None,
    compare_to: Annotated[
        str,
        typer.Option(
            "--compare-to", help="Price the same tokens at this LLM's prices; 'none' for none."
        ),
    ] = "gpt-4",
    prices: Annotated[
        Path | None,
        typer.Option(help="Your price table (YAML) over the packaged one and $SLMSTACK_PRICES."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Spend over a period, grouped, beside what the same tokens cost at an LLM's prices."""
    from slmstack.costs import GROUPS, Ledger, load_prices, report_html, spend_report
    from slmstack.costs.ledger import shown_url
    from slmstack.costs.report import money, ratio, unknown_note

    if by not in GROUPS:
        raise ConfigError(f"--by must be one of {', '.join(GROUPS)}; got {by!r}")
    check_html_target(html)
    url = ledger if "://" in ledger else f"sqlite:///{ledger}"
    book = Ledger(url, create=False)
    try:
        result = spend_report(
            book,
            by=by,
            since=_day(since, "--since"),
            until=_day(until, "--until"),
            compare_to=None if compare_to.lower() == "none" else compare_to,
            prices=load_prices(prices),
        )
    finally:
        book.close()
    if html is not None:
        write_page(html, report_html(result))
    if json_out:
        print_json(result.to_dict())
        return
    llm = result.compare_to
    # Narrow by design: it fits 80 columns. Compute seconds are in --json and --html.
    table = Table(title=f"spend by {by}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(by, overflow="fold", min_width=14)
    table.add_column("requests", justify="right", no_wrap=True)
    table.add_column("tokens in/out", justify="right", overflow="fold")  # wraps first
    table.add_column("cost", justify="right", no_wrap=True)
    if llm:
        table.add_column(f"all to {llm}", justify="right", no_wrap=True)
        table.add_column("stack", justify="right", no_wrap=True)
    for row in [*result.rows, result.total]:
        cells = [row.key, f"{row.requests:,}", f"{row.tokens_in:,}/{row.tokens_out:,}",
                 money(row.cost)]  # fmt: skip
        if llm and row.llm_cost is not None:
            cells += [money(row.llm_cost), ratio(row)]
        table.add_row(*cells, end_section=bool(result.rows) and row is result.rows[-1])
    out.print(table)
    out.print(
        f"ledger: {shown_url(url)}\nprices: {result.prices_version}",
        highlight=False, markup=False, soft_wrap=True,
    )  # fmt: skip
    if result.total.unknown_cost:
        err.print(f"warning: {unknown_note(result.total.unknown_cost)}",
                  highlight=False, markup=False, soft_wrap=True)  # fmt: skip
    if html is not None:
        out.print(f"wrote {html}", highlight=False, markup=False)


app.command("compare")(compare)
