"""``slmstack migration report``: LLM spend before and after, per-task quality and savings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slmstack.cli.common import check_html_target, cli_command, out, print_json, write_page

app = typer.Typer(help="The migration of an app's LLM traffic to small models, measured.")


@app.command("report")
@cli_command
def report(
    ledger: Annotated[
        str, typer.Option(help="The proxy's database (sqlite:///PATH, postgresql+psycopg://...).")
    ] = "sqlite:///slmstack-proxy.db",
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the HTML report here (self-contained).")
    ] = None,
    tasks: Annotated[
        Path | None,
        typer.Option(help="`slmstack discover --json` output: puts unshadowed calls in tasks."),
    ] = None,
    prices: Annotated[
        Path | None, typer.Option(help="Your price table (YAML), over the packaged one.")
    ] = None,
    price_as: Annotated[
        str | None,
        typer.Option(
            help="Price student-answered calls as this model (as the proxy's --price-as)."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """LLM spend before and after the students, savings per month, and each task's figures.

    Before: every recorded call at the LLM's price; after: what the LLM was paid. Per task:
    the share answered locally, agreement, the latest promotion and latency. HTML with --out.
    """
    from slmstack.costs.ledger import shown_url
    from slmstack.costs.prices import from_nano, load_prices
    from slmstack.costs.report import money
    from slmstack.errors import ConfigError
    from slmstack.proxy.report import build_report
    from slmstack.proxy.report_html import render_html

    if out_file is None and not json_out:
        raise ConfigError("say where the report goes: --out report.html, or --json to print it")
    check_html_target(out_file, "--out")
    table = load_prices(prices)
    if price_as is not None:
        table.model(price_as)  # an unknown model: the error names it and the fix, now
    url = ledger if "://" in ledger else f"sqlite:///{ledger}"
    result = build_report(url, table, tasks_file=tasks, price_as=price_as)
    if result.calls == 0:
        raise ConfigError(
            f"{shown_url(url)} holds no recorded calls yet: point the app at `slmstack proxy` (its "
            "--ledger) and report once it has recorded traffic"
        )
    if out_file is not None:
        write_page(out_file, render_html(result))
    if json_out:
        print_json(result.to_json())
        return
    saved = result.saved_per_month
    hours = result.span.total_seconds() / 3600
    basis = f" (scaled from {hours:.1f} h of traffic)" if saved is not None and hours < 24 else ""
    out.print(
        f"LLM spend before {money(from_nano(result.before_nusd))}, after "
        f"{money(from_nano(result.after_nusd))}; {result.student_calls}/{result.calls} calls "
        f"answered locally; saved per month: {'–' if saved is None else money(saved)}{basis}",
        highlight=False,
    )
    out.print(f"[green]wrote[/] {out_file}")
