"""``slmstack inbox list|show|claim|resolve``: the escalation queue."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from slmstack.cli.common import cli_command, given_options, out, print_json
from slmstack.errors import ConfigError, InboxError

if TYPE_CHECKING:
    from slmstack.workflows.inbox import Inbox

app = typer.Typer(help="Escalated requests waiting for a person.", no_args_is_help=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (sqlite:///PATH, postgresql+psycopg://...) or a SQLite file.",
    ),
]
WorkflowOption = Annotated[
    Path | None,
    typer.Option(
        "--workflow",
        help="Read the inbox this workflow YAML escalates to (its `inbox:` entry).",
    ),
]


def _open(db: str | None, workflow: Path | None) -> Inbox:
    """The inbox named by --db, else --workflow, else $SLMSTACK_INBOX_URL; never a new one."""
    from slmstack.workflows.inbox import Inbox
    from slmstack.workflows.loader import workflow_inbox_url
    from slmstack.workflows.packet import default_url

    if db is not None and workflow is not None:
        raise ConfigError("pass --db or --workflow, not both; they both name the inbox")
    if db is not None:
        url = db if "://" in db else f"sqlite:///{db}"
    elif workflow is not None:
        url = workflow_inbox_url(workflow) or default_url()
    elif os.environ.get("SLMSTACK_INBOX_URL"):
        url = os.environ["SLMSTACK_INBOX_URL"]
    else:
        raise InboxError(
            "which inbox? pass --workflow FILE (the workflow whose inbox to read), "
            "--db URL, or set $SLMSTACK_INBOX_URL"
        )
    return Inbox(url, create=False)


_SHOWS_OUTPUT = ("skill", "template", "escalate")
_STYLES = {"open": "yellow", "claimed": "cyan", "resolved": "green"}


def _preview(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters: the start of the text, whitespace folded."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@app.command("list")
@cli_command
def list_packets(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="open, claimed or resolved.")] = "open",
    all_: Annotated[bool, typer.Option("--all", help="Every status.")] = False,
    limit: Annotated[int, typer.Option()] = 50,
    after: Annotated[
        int, typer.Option(min=0, help="Only ids above this (the last id of a page, to page).")
    ] = 0,
    db: DbOption = None,
    workflow: WorkflowOption = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List packets, oldest first (open ones by default)."""
    from slmstack.workflows.packet import shown_url

    if all_ and "status" in given_options(ctx):
        raise ConfigError("--all lists every status; drop --status, or drop --all")
    if not all_ and status not in ("open", "claimed", "resolved"):
        raise ConfigError(f"--status must be open, claimed or resolved; got {status!r}")
    inbox = _open(db, workflow)
    wanted = None if all_ else status
    packets = inbox.list(status=wanted, limit=limit, after=after)  # type: ignore[arg-type]
    if json_out:
        print_json([{k: v for k, v in p.to_dict().items() if k != "trace"} for p in packets])
        return
    url = shown_url(inbox.url)
    what = "" if all_ else f"{status} "
    if not packets:
        out.print(Text(f"no {what}packets in {url}"), soft_wrap=True)
        return
    plural = "" if len(packets) == 1 else "s"
    out.print(Text(f"{len(packets)} {what}packet{plural} in {url}", style="bold"), soft_wrap=True)
    # Two lines a packet, not a table: a table of seven columns squeezed the text, which
    # is what a person scans for, to a few characters. Here it gets the whole width.
    width = max(40, min(out.width - 4, 120))
    for p in packets:
        found = []
        if p.intent:
            sure = f" {p.intent_confidence:.2f}" if p.intent_confidence is not None else ""
            found.append(f"intent {p.intent}{sure}")
        if p.sentiment:
            found.append(f"sentiment {p.sentiment}")
        head = Text.assemble(
            (f"#{p.id}", "bold"),
            "  ",
            (p.status + (f" ({p.claimed_by})" if p.claimed_by else ""), _STYLES[p.status]),
            "  ",
            p.created_at.strftime("%Y-%m-%d %H:%M") if p.created_at else "",
            "  ",
            (p.reason, "bold"),
            f"  ({', '.join(found)})" if found else "",
        )
        out.print(head, soft_wrap=True)
        out.print(Text("    " + _preview(p.text, width)), soft_wrap=True)


@app.command("show")
@cli_command
def show(
    packet_id: Annotated[int, typer.Argument()],
    db: DbOption = None,
    workflow: WorkflowOption = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Everything about one packet: text, findings, why it escalated, the trace."""
    p = _open(db, workflow).get(packet_id)
    if json_out:
        print_json(p.to_dict())
        return
    table = Table(show_header=False, title=f"packet {p.id} ({p.status})")
    rows = {
        "text": p.text,
        "intent": p.intent
        + (f" ({p.intent_confidence:.2f})" if p.intent_confidence is not None else "")
        if p.intent
        else "",
        "sentiment": p.sentiment or "",
        "entities": "; ".join(f"{e['label']}: {e['text']}" for e in p.entities),
        "summary": p.summary or "",
        "reason": p.reason,
        "why": p.why,
        "workflow": p.workflow,
        "claimed by": p.claimed_by or "",
        "resolution": p.resolution or "",
    }
    for key, value in rows.items():
        table.add_row(key, Text(value))  # a customer's text is shown as written, never as markup
    out.print(table)
    if p.trace:
        # The whole tree: a workflow's top step is often a route whose branches hold the
        # steps that decided (the intent, the FAQ miss, the escalation).
        tree = Tree(Text("trace", style="bold"))
        for step in p.trace:
            _add_step(tree, step)
        out.print(tree)


def _step_line(step: dict[str, Any]) -> Text:
    """One step of a packet's (JSON) trace: name, output, decision and why, time."""
    line = Text(str(step.get("name", "?")), style="bold")
    # Containers (route, block, cascade) carry their last step's output: shown there only.
    found = (step.get("output") or {}) if step.get("kind") in _SHOWS_OUTPUT else {}
    spans = "; ".join(f"{s['label']}: {s['text']}" for s in found.get("spans", ()))
    shown = found.get("text") or found.get("label") or spans
    if found.get("abstained"):
        shown = f"(abstained: {found['abstained']})"
    if shown:
        line.append(f" → {_preview(str(shown), 70)}")
        if found.get("label") is not None and not found.get("abstained"):
            line.append(f" (conf {float(found.get('confidence', 0.0)):.2f})", style="dim")
    decision = step.get("decision")
    if decision:
        line.append(f" ⇒ {decision.get('taken', '')}", style="cyan")
        line.append(f" {decision.get('why', '')}", style="italic")
    line.append(f" {float(step.get('latency_ms', 0.0)):.1f} ms", style="dim")
    return line


def _add_step(tree: Tree, step: dict[str, Any]) -> None:
    children = step.get("children", ())
    if step.get("kind") == "sequence" and len(children) == 1 and not step.get("decision"):
        _add_step(tree, children[0])  # a one-step list adds nothing worth a level
        return
    node = tree.add(_step_line(step))
    for child in step.get("children", ()):
        _add_step(node, child)


@app.command("claim")
@cli_command
def claim(
    packet_id: Annotated[int, typer.Argument()],
    who: Annotated[str, typer.Option("--as", help="Who takes it.")],
    db: DbOption = None,
    workflow: WorkflowOption = None,
) -> None:
    """Take an open packet."""
    p = _open(db, workflow).claim(packet_id, who)
    out.print(Text(f"packet {p.id} claimed by {p.claimed_by}"))


@app.command("resolve")
@cli_command
def resolve(
    packet_id: Annotated[int, typer.Argument()],
    note: Annotated[str, typer.Option(help="What was done.")],
    who: Annotated[str | None, typer.Option("--as", help="Who resolved it.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Resolve a packet someone else has claimed.")
    ] = False,
    db: DbOption = None,
    workflow: WorkflowOption = None,
) -> None:
    """Close a packet with a note."""
    p = _open(db, workflow).resolve(packet_id, note, who=who, force=force)
    out.print(Text(f"packet {p.id} resolved"))
