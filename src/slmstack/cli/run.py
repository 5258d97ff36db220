"""``slmstack run WORKFLOW.yaml "text"`` or ``--input FILE --output OUT.jsonl``."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from slmstack.cli.common import cli_command, err, given_options, out
from slmstack.errors import ConfigError

if TYPE_CHECKING:
    from slmstack.workflows import Workflow


@cli_command
def run(
    ctx: typer.Context,
    workflow: Annotated[Path, typer.Argument(help="The workflow YAML file.")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to run on.")] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", help=".txt, CSV, TSV or JSONL of texts.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="JSONL results; an existing file is resumed."),
    ] = None,
    text_field: Annotated[str, typer.Option(help="Column or key of the text.")] = "text",
    trace: Annotated[bool, typer.Option("--trace", help="Show each decision as a tree.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
    restart: Annotated[
        bool, typer.Option(help="With --output: discard it and start over instead of resuming.")
    ] = False,
    inbox: Annotated[
        str | None, typer.Option(help="Database URL of the escalation inbox (overrides the file).")
    ] = None,
) -> None:
    """Run a workflow on texts, or on a file with a progress bar and resume."""
    from slmstack.workflows import load_workflow

    if bool(texts) == (input_file is not None):
        raise ConfigError('pass either texts ("...") or --input FILE --output OUT.jsonl')
    if input_file is not None and output is None:
        raise ConfigError("--input needs --output OUT.jsonl, where results are written")
    if input_file is None:  # a file option with texts would be ignored, and no file written
        stray = sorted(given_options(ctx) & {"output", "restart", "text_field"})
        if stray:
            flags = ", ".join("--" + name.replace("_", "-") for name in stray)
            raise ConfigError(
                f"{flags} only apply to a file run: pass --input FILE --output OUT.jsonl "
                "instead of texts, or drop them"
            )
    # Closed on the way out: the ledger is flushed now, so a database that refuses its
    # rows fails the command, and the inbox, thread pools and connections are released.
    with load_workflow(workflow, inbox=inbox) as wf:
        _run(wf, texts or [], input_file, output, text_field=text_field, trace=trace,
             json_out=json_out, restart=restart)  # fmt: skip


def _run(
    wf: Workflow,
    texts: list[str],
    input_file: Path | None,
    output: Path | None,
    *,
    text_field: str,
    trace: bool,
    json_out: bool,
    restart: bool,
) -> None:
    """The command's work on the opened workflow ``wf``."""
    from slmstack.heap import freeze_loaded
    from slmstack.workflows import run_batch
    from slmstack.workflows.render import trace_tree

    if input_file is not None:
        assert output is not None
        freeze_loaded()  # a file run is long: no full collection over the models midway
        try:
            summary = run_batch(
                wf, input_file, output, text_field=text_field, trace=trace, restart=restart
            )
        except KeyboardInterrupt:
            err.print(f"interrupted; run the same command again to resume from {output}")
            raise typer.Exit(130) from None
        out.print(
            f"{summary.processed} rows run, {summary.already_done} already done, "
            f"{summary.escalated} escalated, {summary.seconds:.1f} s → {summary.output}"
        )
        if summary.packets:
            url = _inbox_shown(wf)
            out.print(
                f"{summary.packets} packet{'' if summary.packets == 1 else 's'} filed in the "
                f"inbox {url}: `slmstack inbox list --db {shlex.quote(url)}`",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        return
    for text in texts or []:
        result = wf.run(text)
        if json_out:
            print(json.dumps(result.to_dict(trace=trace), ensure_ascii=False))
        elif trace:
            out.print(trace_tree(result))
        else:
            # Text, not markup: an answer can quote the customer ("[/]" would crash here).
            status = f" ({result.status})" if result.status == "escalated" else ""
            route = " → ".join(result.route)  # empty for a workflow that does not route
            colon = ": " if route or status else ""
            line = Text.assemble(route, (status, "red"), colon, result.answer)
            out.print(line, highlight=False)
        packet = result.escalation.packet_id if result.escalation else None
        if packet is not None:
            # On stderr with --json, so that stdout stays one JSON object per line.
            url = _inbox_shown(wf)
            (err if json_out else out).print(
                f"packet {packet} filed in the inbox {url}; see it with "
                f"`slmstack inbox show {packet} --db {shlex.quote(url)}`",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


def _inbox_shown(wf: Workflow) -> str:
    """The URL of the inbox ``wf`` filed its packets in, password masked."""
    from slmstack.workflows.packet import shown_url

    return shown_url(wf.inbox.url)
