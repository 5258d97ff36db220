"""``slmstack inbox list|show|claim|resolve``: the escalation queue."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from slmstack.cli.common import cli_command, out, print_json

if TYPE_CHECKING:
    from slmstack.workflows.inbox import Inbox

app = typer.Typer(help="Escalated requests waiting for a person.", no_args_is_help=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (default: $SLMSTACK_INBOX_URL or sqlite:///slmstack-inbox.db).",
    ),
]


def _open(db: str | None) -> Inbox:
    from slmstack.workflows.inbox import Inbox, default_url

    return Inbox(db or default_url())


@app.command("list")
@cli_command
def list_packets(
    status: Annotated[str | None, typer.Option(help="open, claimed or resolved.")] = "open",
    all_: Annotated[bool, typer.Option("--all", help="Every status.")] = False,
    limit: Annotated[int, typer.Option()] = 50,
    db: DbOption = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List packets, oldest first (open ones by default)."""
    from slmstack.errors import ConfigError

    if not all_ and status not in ("open", "claimed", "resolved"):
        raise ConfigError(f"--status must be open, claimed or resolved; got {status!r}")
    packets = _open(db).list(status=None if all_ else status, limit=limit)  # type: ignore[arg-type]
    if json_out:
        print_json([{k: v for k, v in p.to_dict().items() if k != "trace"} for p in packets])
        return
    table = Table("id", "status", "created", "intent", "sentiment", "reason", "text")
    for p in packets:
        table.add_row(
            str(p.id),
            p.status + (f" ({p.claimed_by})" if p.claimed_by else ""),
            p.created_at.strftime("%Y-%m-%d %H:%M") if p.created_at else "",
            p.intent or "",
            p.sentiment or "",
            p.reason,
            p.text if len(p.text) <= 50 else p.text[:47] + "...",
        )
    out.print(table)


@app.command("show")
@cli_command
def show(
    packet_id: Annotated[int, typer.Argument()],
    db: DbOption = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Everything about one packet: text, findings, why it escalated, the trace."""
    p = _open(db).get(packet_id)
    if json_out:
        print_json(p.to_dict())
        return
    table = Table(show_header=False, title=f"packet {p.id} ({p.status})")
    rows = {
        "text": p.text,
        "intent": f"{p.intent} ({p.intent_confidence:.2f})" if p.intent else "",
        "sentiment": p.sentiment or "",
        "entities": "; ".join(f"{e['label']}: {e['text']}" for e in p.entities),
        "summary": p.summary or "",
        "reason": p.reason,
        "why": p.why,
        "workflow": p.workflow,
        "claimed by": p.claimed_by or "",
        "resolution": p.resolution or "",
        "steps": " → ".join(f"{t['name']}" for t in p.trace),
    }
    for key, value in rows.items():
        table.add_row(key, value)
    out.print(table)


@app.command("claim")
@cli_command
def claim(
    packet_id: Annotated[int, typer.Argument()],
    who: Annotated[str, typer.Option("--as", help="Who takes it.")],
    db: DbOption = None,
) -> None:
    """Take an open packet."""
    p = _open(db).claim(packet_id, who)
    out.print(f"packet {p.id} claimed by {p.claimed_by}")


@app.command("resolve")
@cli_command
def resolve(
    packet_id: Annotated[int, typer.Argument()],
    note: Annotated[str, typer.Option(help="What was done.")],
    who: Annotated[str | None, typer.Option("--as", help="Who resolved it.")] = None,
    db: DbOption = None,
) -> None:
    """Close a packet with a note."""
    p = _open(db).resolve(packet_id, note, who=who)
    out.print(f"packet {p.id} resolved")
