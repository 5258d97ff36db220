"""``slmstack export DIR --format onnx [--int8] --validation FILE --out OUT``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from slmstack.cli.common import cli_command, out, prepare_out, print_json, refuse_same
from slmstack.errors import ConfigError


@cli_command
def export(
    skill_dir: Annotated[
        Path,
        typer.Argument(help="A saved TextClassifier, EntityTagger or FAQAnswerer folder."),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the exported skill.")],
    validation: Annotated[
        Path,
        typer.Option(
            help="Validation data for the parity check and the accuracy gate: labelled "
            "CSV/TSV/JSONL (classifier), CoNLL or span JSONL (tagger), queries labelled "
            "with an entry id, empty or 'oos' to decline (FAQ)."
        ),
    ],
    fmt: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    int8: Annotated[
        bool, typer.Option("--int8", help="Quantize to int8 (the fastest recipe that passes).")
    ] = False,
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
    allow_pickle: Annotated[
        bool, typer.Option(help="Allow the skill's pickled base weights (they can run code).")
    ] = False,
) -> None:
    """Export an encoder skill to ONNX (fp32 or int8), checked against the torch skill first."""
    from slmstack.skills.base import load

    if fmt != "onnx":
        raise ConfigError(f"--format {fmt!r} is not supported; the only format is 'onnx'")
    if recipe != "auto" and not int8:
        raise ConfigError("--recipe only applies with --int8")
    from slmstack.export import RECIPES
    from slmstack.export import recipe as find_recipe

    recipes = RECIPES if recipe == "auto" else (find_recipe(recipe),)
    harm = "the export would replace the only copy that can be resumed or exported again"
    refuse_same(out_dir, skill_dir, "the skill being exported", harm)
    prepare_out(out_dir, overwrite, "--overwrite")
    skill = load(skill_dir, allow_pickle=allow_pickle)
    options = {"int8": int8, "recipes": recipes, "margin": margin, "force": force}
    result = _export(skill, skill_dir, out_dir, validation, text_column, label_column, options)
    if json_out:
        print_json(result.to_json())
        return
    metric = result.chosen.gate.metric
    table = Table("graph", "agreement", "max Δp", metric, "Δ points", "texts/s",
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


def _export(
    skill: Any,
    skill_dir: Path,
    out_dir: Path,
    validation: Path,
    text_column: str,
    label_column: str,
    options: dict[str, Any],
) -> Any:
    """Dispatch on the skill's kind; the validation file is read the way that kind reads it."""
    from slmstack.skills.classifier import TextClassifier
    from slmstack.skills.faq import FAQAnswerer
    from slmstack.skills.tagger import EntityTagger

    if isinstance(skill, TextClassifier):
        from slmstack.data.readers import read_examples
        from slmstack.data.validation import refuse_unusable_rows
        from slmstack.evaluation.classification import split_unseen_labels
        from slmstack.export import export_classifier

        # Read as `slmstack eval` reads it: a label seen once is fine for scoring, and a
        # label the skill never learned is refused (it could only make the gate lenient).
        data = read_examples(
            validation, text_column=text_column, label_column=label_column, validate=False
        )
        refuse_unusable_rows(data, path=validation)
        data, _ = split_unseen_labels(data, skill.classes_, validation, "error", droppable=False)
        return export_classifier(skill, out_dir, data, **options)
    if isinstance(skill, EntityTagger):
        from slmstack.export import export_tagger

        return export_tagger(skill, out_dir, EntityTagger.read_training_data(validation), **options)
    if isinstance(skill, FAQAnswerer):
        from slmstack.export import export_faq, read_faq_queries

        queries = read_faq_queries(validation, text_column=text_column, label_column=label_column)
        return export_faq(skill, out_dir, queries, **options)
    raise ConfigError(
        f"{skill_dir} holds a {type(skill).__name__}; ONNX export supports TextClassifier, "
        "EntityTagger and FAQAnswerer skills so far."
    )
