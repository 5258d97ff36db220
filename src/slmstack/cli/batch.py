"""``slmstack batch WORKFLOW.yaml --input DIR_OR_GLOB --output OUT.jsonl --engine local|ray``."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from slmstack.cli.common import cli_command, err, out


@cli_command
def batch(
    workflow: Annotated[Path, typer.Argument(help="The workflow YAML file.")],
    input_path: Annotated[
        str,
        typer.Option(
            "--input",
            help="JSONL, CSV, TSV or Parquet file, a folder, or a quoted glob ('docs/*.txt'); "
            "other files are one text document each.",
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", help="JSONL results; an existing file is resumed.")
    ],
    engine: Annotated[
        str, typer.Option(help="local: worker processes here; ray: Ray Data actors.")
    ] = "local",
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes or Ray actors; each loads the models.")
    ] = 1,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per workflow batch.")] = 64,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to run on (ray://HOST:10001); default: a local Ray."),
    ] = None,
    errors: Annotated[
        Path | None,
        typer.Option(help="JSONL of failed rows and why (default: OUT.errors.jsonl)."),
    ] = None,
    text_field: Annotated[str, typer.Option(help="JSONL key or CSV/Parquet column.")] = "text",
    threads: Annotated[
        int | None,
        typer.Option(
            min=1, help="Torch and onnxruntime threads per worker (default: cores / workers)."
        ),
    ] = None,
    trace: Annotated[bool, typer.Option("--trace", help="Write each row's full trace.")] = False,
    restart: Annotated[
        bool, typer.Option(help="Discard the output and errors files and start over.")
    ] = False,
    retry_errors: Annotated[
        bool, typer.Option(help="Run the rows of the errors file again.")
    ] = False,
    inbox: Annotated[
        str | None, typer.Option(help="Database URL of the escalation inbox (overrides the file).")
    ] = None,
    ledger: Annotated[
        str | None, typer.Option(help="Database URL of the cost ledger (overrides the file).")
    ] = None,
) -> None:
    """Run a workflow over many inputs on a local process pool or on Ray; resumable."""
    from slmstack.batchjob import run_job

    try:
        summary = run_job(
            workflow, input_path, output, engine=engine, workers=workers,
            batch_size=batch_size, errors_path=errors, text_field=text_field, trace=trace,
            restart=restart, retry_errors=retry_errors, ray_address=ray_address,
            threads=threads, inbox=inbox, ledger=ledger,
        )  # fmt: skip
    except KeyboardInterrupt:
        err.print(f"interrupted; run the same command again to resume from {output}")
        raise typer.Exit(130) from None
    rate = summary.processed / summary.seconds if summary.seconds else 0.0
    out.print(
        f"{summary.processed} rows run ({rate:.1f}/s on {summary.workers} {summary.engine} "
        f"worker{'' if summary.workers == 1 else 's'}), {summary.already_done} already done, "
        f"{summary.seconds:.1f} s → {summary.output}",
        highlight=False,
    )
    if summary.failed:
        err.print(
            f"warning: {summary.failed} row{'' if summary.failed == 1 else 's'} failed; "
            f"the reasons are in {summary.errors}. Fix them and rerun with --retry-errors "
            f"(`slmstack batch {shlex.quote(str(workflow))} ... --retry-errors`)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        if summary.failed == summary.processed:  # not one row of this run went through
            raise typer.Exit(1)
