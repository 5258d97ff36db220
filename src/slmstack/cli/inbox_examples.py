"""``slmstack inbox export-examples``: packets agents labelled, as training data.

The console saves a labelled example when an agent resolves a packet with a corrected
label; this writes them as JSONL that ``slmstack train classify FILE --resume SKILL``
continues training on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slmstack.cli.common import cli_command, out, print_json
from slmstack.cli.inbox import DbOption, WorkflowOption
from slmstack.cli.inbox import _open as open_inbox


@cli_command
def export_examples(
    out_file: Annotated[
        Path, typer.Option("--out", help="JSONL file to write (an earlier export is replaced).")
    ],
    task: Annotated[
        str, typer.Option(help="Which labels: intent (default), or another task agents set.")
    ] = "intent",
    mix_with: Annotated[
        Path | None,
        typer.Option(
            "--mix-with",
            help="Labelled CSV/TSV/JSONL (e.g. the original training data) appended, so "
            "resumed training keeps what the skill knew.",
        ),
    ] = None,
    db: DbOption = None,
    workflow: WorkflowOption = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Write the examples agents labelled in the inbox as training data (JSONL)."""
    from slmstack.workflows.inbox_feedback import InboxFeedback

    written = InboxFeedback(open_inbox(db, workflow)).export(out_file, task=task, mix_with=mix_with)
    if json_out:
        print_json({"out": str(out_file), "rows": written, "task": task})
        return
    out.print(f"wrote {written} {task} examples to {out_file}", highlight=False, markup=False)
    out.print(
        f"continue training with: slmstack train classify {out_file} --resume SKILL --out NEW",
        highlight=False,
        markup=False,
    )
