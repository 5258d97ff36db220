"""``slmstack export DIR --format onnx [--int8] --validation FILE --out OUT``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from slmstack.cli.common import cli_command, out, prepare_out, print_json
from slmstack.errors import ConfigError


@cli_command
def export(
    skill_dir: Annotated[Path, typer.Argument(help="A saved TextClassifier folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the exported skill.")],
    validation: Annotated[
        Path,
        typer.Option(help="Labelled CSV/TSV/JSONL for the parity check and the accuracy gate."),
    ],
    fmt: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    int8: Annotated[bool, typer.Option("--int8", help="Quantize to int8 (dynamic).")] = False,
    recipe: Annotated[
        str,
        typer.Option(help="int8 recipe: 'auto' (the fastest that passes the gate) or a name."),
    ] = "auto",
    margin: Annotated[
        float, typer.Option(help="Accuracy points the export may lose on --validation.")
    ] = 0.5,
    force: Annotated[
        bool, typer.Option(help="Write the export even if it fails the accuracy gate.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing skill in --out.")] = False,
    text_column: Annotated[str, typer.Option()] = "text",
    label_column: Annotated[str, typer.Option()] = "label",
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Export a classifier to ONNX (fp32 or int8), checked against the torch skill first."""
    from slmstack.skills.base import load
    from slmstack.skills.classifier import TextClassifier

    if fmt != "onnx":
        raise ConfigError(f"--format {fmt!r} is not supported; the only format is 'onnx'")
    if recipe != "auto" and not int8:
        raise ConfigError("--recipe only applies with --int8")
    from slmstack.export import RECIPES, export_classifier
    from slmstack.export import recipe as find_recipe

    recipes = RECIPES if recipe == "auto" else (find_recipe(recipe),)
    prepare_out(out_dir, overwrite)
    skill = load(skill_dir)
    if not isinstance(skill, TextClassifier):
        raise ConfigError(
            f"{skill_dir} holds a {type(skill).__name__}; only TextClassifier skills can be "
            "exported to ONNX so far."
        )
    data = TextClassifier.read_training_data(
        validation, text_column=text_column, label_column=label_column
    )
    result = export_classifier(
        skill, out_dir, data, int8=int8, recipes=recipes, margin=margin, force=force
    )
    if json_out:
        print_json(result.to_json())
        return
    table = Table("graph", "label agreement", "max Δp", "accuracy", "Δ points", "texts/s",
                  "MB", "gate")  # fmt: skip
    for c in result.candidates:
        name = c.precision + ("" if c.recipe is None else f" {c.recipe.name}")
        chosen = " (written)" if c is result.chosen else ""
        table.add_row(
            name + chosen, f"{c.parity.agreement:.1%}", f"{c.parity.max_prob_diff:.2g}",
            f"{c.gate.exported_accuracy:.2f}", f"{-c.gate.drop:+.2f}", f"{c.texts_per_s:.0f}",
            f"{c.size_mb:.1f}", "pass" if c.passed else "FAIL",
        )  # fmt: skip
    out.print(table)
    note = " (forced past the accuracy gate)" if result.forced else ""
    out.print(f"wrote {out_dir}{note} in {result.seconds:.0f} s")
