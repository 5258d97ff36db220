"""``slmstack discover --ledger URL``: the tasks in the traffic the proxy recorded."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from slmstack.cli.common import cli_command, out, print_json

# What each kind of task is replaced by (the skills that train on the recorded answers).
REPLACEMENT = {
    "classification": "TextClassifier",
    "extraction": "FieldExtractor",
    "generation": "Summarizer (distilled generator)",
}


@cli_command
def discover(
    ledger: Annotated[
        str,
        typer.Option(
            help="The proxy's database (sqlite:///PATH, postgresql+psycopg://...) or a SQLite file."
        ),
    ] = "sqlite:///slmstack-proxy.db",
    min_support: Annotated[
        int, typer.Option(min=2, help="Calls a template needs to count as its own.")
    ] = 3,
    members: Annotated[
        bool, typer.Option("--members", help="With --json: list each task's request ids.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the tasks as JSON.")] = False,
) -> None:
    """Group recorded calls into tasks by prompt template; say what small model fits each."""
    from slmstack.proxy import TrafficStore
    from slmstack.proxy.discover import discover as find_tasks

    url = ledger if "://" in ledger else f"sqlite:///{ledger}"
    store = TrafficStore(url, create=False)
    try:
        rows = store.rows()
    finally:
        store.close()
    tasks = find_tasks(rows, min_support=min_support)
    if json_out:
        print_json({
            "requests": len(rows),
            "tasks": [{**t.to_dict(members=members), "replacement": REPLACEMENT[t.kind]}
                      for t in tasks],
        })  # fmt: skip
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"{len(tasks)} tasks in {len(rows)} calls")
    for column in ("task", "kind → replacement", "calls", "spend $", "template", "labels/keys"):
        table.add_column(column, overflow="fold")
    for t in tasks:
        what = t.labels if t.kind == "classification" else t.schema
        shown = ", ".join(what[:6]) + (f" (+{len(what) - 6})" if len(what) > 6 else "")
        spend = f"{t.spend:.4f}" + (f" (+{t.unpriced} unpriced)" if t.unpriced else "")
        template = (
            t.template if len(t.template) <= 90 else t.template[:40] + " … " + t.template[-45:]
        )
        table.add_row(t.task_id, f"{t.kind} → {REPLACEMENT[t.kind]}", str(t.requests), spend,
                      template.replace("\n", "⏎"), shown)  # fmt: skip
    out.print(table)
