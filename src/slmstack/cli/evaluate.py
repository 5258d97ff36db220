"""``slmstack eval DIR DATA``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from slmstack.cli.common import check_html_target, cli_command, out, print_json, write_page


def _print_report(report: dict[str, Any]) -> None:
    headline = Table("metric", "value", title="evaluation")
    for key, value in report.items():
        if isinstance(value, int | float):
            headline.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
        elif value is None:  # a rate of nothing (no answer was given, say)
            headline.add_row(key, "none")
    for key, value in report.get("speed", {}).items():
        headline.add_row(key, f"{value:.2f}")
    out.print(headline)
    per_class = report.get("per_class")
    if per_class:
        table = Table("label", "precision", "recall", "f1", "support", title="per class")
        for label, row in per_class.items():
            table.add_row(
                label,
                f"{row['precision']:.3f}",
                f"{row['recall']:.3f}",
                f"{row['f1']:.3f}",
                str(row["support"]),
            )
        out.print(table)
    cm = report.get("confusion_matrix")
    if cm and len(cm["labels"]) <= 12:
        table = Table("true \\ pred", *cm["labels"], title="confusion matrix")
        for label, row in zip(cm["labels"], cm["matrix"], strict=True):
            table.add_row(label, *map(str, row))
        out.print(table)
    elif cm:
        out.print(f"confusion matrix: {len(cm['labels'])} labels, shown with --json")


@cli_command
def evaluate(
    skill_dir: Annotated[Path, typer.Argument(help="A saved skill folder.")],
    data: Annotated[
        Path,
        typer.Argument(
            help="Labelled file: the skill's training format, or for FAQ and troubleshooting "
            "skills a CSV/JSONL of text,label (label: the entry id or the expected document; "
            "empty or oos for a question nothing answers)."
        ),
    ],
    text_column: Annotated[
        str | None, typer.Option(help="Column of the texts (default: text).")
    ] = None,
    label_column: Annotated[
        str | None,
        typer.Option(help="Column of the labels (default: label; a summarizer's: summary)."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the full report as JSON.")
    ] = False,
    allow_pickle: Annotated[
        bool, typer.Option(help="Allow pickled base weights (they can run code).")
    ] = False,
    unseen_labels: Annotated[
        str,
        typer.Option(help="Rows whose label the skill never learned: 'error' or 'drop'."),
    ] = "error",
    html_out: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write the report as one HTML page with plots (per-class F1, confusion "
            "matrix, reliability of the confidence).",
        ),
    ] = None,
    reads: Annotated[
        list[str] | None,
        typer.Option(
            "--read",
            help="A data-reader option, key=value (a recommender's log: user_column=userId).",
        ),
    ] = None,
) -> None:
    """Accuracy, macro-F1, per-class report, confusion matrix, latency, throughput, memory."""
    from slmstack.skills.base import load

    check_html_target(html_out)
    from slmstack.cli.train_generic import _read_options

    skill = load(skill_dir, allow_pickle=allow_pickle)
    # only the columns given: a summarizer reads its references from "summary" by default
    given = {"text_column": text_column, "label_column": label_column}
    options: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    options |= _read_options(type(skill), tuple(reads or ()))
    report = skill.evaluate(data, unseen_labels=unseen_labels, **options)
    if json_out:  # the figures first: a report that fails to draw must not lose them
        print_json(report)
    else:
        _print_report(report)
    if html_out is not None:
        from slmstack.evaluation.html import evaluation_page

        title = f"{skill_dir.name} on {data.name}"
        write_page(html_out, evaluation_page(report, title=title))
        if not json_out:
            out.print(f"wrote {html_out}", highlight=False, markup=False)
