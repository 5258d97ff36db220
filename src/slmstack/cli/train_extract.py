"""``slmstack train tag|fields|clauses``: the extraction skills."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from slmstack.cli.common import cli_command, err, given_options, out, prepare_out, print_json
from slmstack.data.utf8 import read_utf8


@cli_command
def tag(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="CoNLL (.conll/.txt) or span JSONL (.jsonl).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to save the skill to.")],
    base: Annotated[str, typer.Option(help="Alias, local folder or Hugging Face id.")] = "minilm",
    backend: Annotated[
        str, typer.Option(help="'transformer' (fine-tuned) or 'spacy' (pretrained, no training).")
    ] = "transformer",
    validation: Annotated[
        Path | None, typer.Option(help="Validation file; default: hold out --val-fraction.")
    ] = None,
    scheme: Annotated[
        Literal["auto", "iob1", "iob2"],
        typer.Option(help="CoNLL tags: auto, iob1 or iob2 (strict)."),
    ] = "auto",
    epochs: Annotated[int, typer.Option()] = 4,
    learning_rate: Annotated[float, typer.Option("--lr")] = 5e-5,
    batch_size: Annotated[int, typer.Option()] = 16,
    max_length: Annotated[int, typer.Option(help="Sub-words per window.")] = 128,
    stride: Annotated[int, typer.Option(help="Overlap of windows on long texts.")] = 32,
    case_dim: Annotated[int, typer.Option(help="Casing feature size; 0 turns it off.")] = 16,
    case_input: Annotated[
        bool, typer.Option(help="Also add casing to the encoder's input embeddings.")
    ] = True,
    val_fraction: Annotated[float, typer.Option()] = 0.1,
    seed: Annotated[int, typer.Option()] = 0,
    allow_pickle: Annotated[bool, typer.Option(help="Accept pickled base weights.")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing skill in --out.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
) -> None:
    """Train an entity tagger (spans with character offsets)."""
    from slmstack.data.tagging import read_tagged
    from slmstack.errors import ConfigError
    from slmstack.skills.spacy_tagger import CONLL_MAP, SpacyTagger
    from slmstack.skills.tagger import EntityTagger

    if backend == "spacy":  # a pretrained pipeline: the training options would do nothing
        unused = given_options(ctx) & {
            "base", "validation", "epochs", "learning_rate", "batch_size", "max_length", "stride",
            "case_dim", "case_input", "val_fraction", "seed", "allow_pickle"}  # fmt: skip
        if unused:
            flags = ", ".join("--lr" if f == "learning_rate" else "--" + f.replace("_", "-")
                              for f in sorted(unused))  # fmt: skip
            raise ConfigError(
                f"{flags} do not apply to --backend spacy (a pretrained pipeline; nothing is "
                "trained); drop them, or use --backend transformer"
            )
    prepare_out(out_dir, force)
    examples = read_tagged(data, scheme=scheme)
    if backend == "spacy":
        labels = {s.label for ex in examples for s in ex.spans}
        mapping = CONLL_MAP if labels and labels <= set(CONLL_MAP.values()) else None
        spacy_skill = SpacyTagger(label_map=mapping).fit(examples)
        spacy_skill.save(out_dir)
        unreachable = spacy_skill.unreachable_labels_
        if json_out:
            print_json({"out": str(out_dir), "pipeline": spacy_skill.pipeline,
                        "labels": spacy_skill.labels_,
                        "unreachable_labels": unreachable})  # fmt: skip
            return
        out.print(f"[green]saved[/] {out_dir}  (spaCy {spacy_skill.pipeline}, not trained)")
        if unreachable:
            out.print(f"[yellow]the pipeline never predicts {', '.join(unreachable)}, which the "
                      "data labels; use --backend transformer to learn them[/]")  # fmt: skip
        return
    if backend != "transformer":
        raise ConfigError(f"--backend must be 'transformer' or 'spacy'. Got {backend!r}.")
    val = read_tagged(validation, scheme=scheme) if validation else None
    skill = EntityTagger(
        base=base,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_length=max_length,
        stride=stride,
        case_dim=case_dim,
        case_input=case_input,
        val_fraction=val_fraction,
        seed=seed,
        allow_pickle=allow_pickle,
    ).fit(examples, validation=val)
    skill.save(out_dir)
    m = skill.metrics_
    summary = {
        "out": str(out_dir),
        "tags": len(skill.tags_),
        "train_seconds": round(skill.provenance_.seconds, 2),
        "duplicates_dropped": skill.provenance_.duplicates_dropped,
        "val_precision": round(m["precision"], 4),
        "val_recall": round(m["recall"], 4),
        "val_f1": round(m["f1"], 4),
        "misaligned_spans": skill.misaligned_,
    }
    if json_out:
        print_json(summary)
        return
    out.print(f"[green]saved[/] {out_dir}  ({summary['tags']} tags, {summary['train_seconds']} s)")
    out.print(
        f"validation entity P {summary['val_precision']:.4f}  R {summary['val_recall']:.4f}  "
        f"F1 {summary['val_f1']:.4f}"
    )
    if skill.misaligned_:
        out.print(
            f"[yellow]{skill.misaligned_} spans do not fall on token boundaries and were "
            "widened to whole tokens[/]"
        )


def _read_schema(path: Path) -> dict[str, object]:
    import json

    import yaml

    from slmstack.data.yaml_lines import yaml_problem
    from slmstack.errors import ConfigError

    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"schema file {path} {what}; pass the JSON or YAML file of the fields")
    text = read_utf8(path)
    try:
        schema = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_problem(path, exc)) from exc
    if not isinstance(schema, dict):
        raise ConfigError(
            f'{path} must map field names to types, e.g. {{"date": "date", "total": '
            '{"type": "amount", "currency": "EUR"}}'
        )
    return schema


@cli_command
def fields(
    data: Annotated[Path, typer.Argument(help='JSONL: {"text": ..., "values": {...}} per line.')],
    schema: Annotated[Path, typer.Option(help="JSON or YAML: field name -> type or options.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to save the skill to.")],
    base: Annotated[str, typer.Option(help="Alias, local folder or Hugging Face id.")] = "minilm",
    threshold: Annotated[float, typer.Option(help="Below it a field is reported missing.")] = 0.5,
    group_by: Annotated[
        str | None,
        typer.Option(
            help="Field whose value groups documents (the vendor): thresholds are "
            "tuned on whole groups, as for new vendors."
        ),
    ] = None,
    val_folds: Annotated[
        int, typer.Option(help="Tune thresholds on every document once, by this many fits.")
    ] = 1,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            help="Drop documents whose true values cannot be read (a month-first "
            "date under DMY) and list them, instead of stopping."
        ),
    ] = False,
    seed: Annotated[int, typer.Option()] = 0,
    allow_pickle: Annotated[bool, typer.Option(help="Accept pickled base weights.")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing skill in --out.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
) -> None:
    """Train a field extractor (invoices, receipts) from documents and their values."""
    from slmstack.data.fields import UnreadableValue, drop_unreadable, parse_schema
    from slmstack.errors import DataError
    from slmstack.skills.fields import FieldExtractor

    prepare_out(out_dir, force)
    skill = FieldExtractor(schema=_read_schema(schema), base=base, threshold=threshold,
                           group_by=group_by, val_folds=val_folds, seed=seed,
                           allow_pickle=allow_pickle)  # fmt: skip
    FieldExtractor.check_params(skill.get_params())  # a bad schema: before reading data
    examples = FieldExtractor.read_training_data(data)
    skipped: list[UnreadableValue] = []
    if skip_invalid:
        examples, skipped = drop_unreadable(parse_schema(skill.schema), examples)
        if not examples:
            raise DataError(f"every document of {data} has a value that cannot be read")
        for u in skipped:
            err.print(f"[yellow]skipped[/] {u}", soft_wrap=True, markup=True, highlight=False)
    skill.fit(examples)
    skill.save(out_dir)
    summary = {"out": str(out_dir), "train_seconds": round(skill.provenance_.seconds, 2),
               "documents": len(examples), "skipped_invalid": [str(u) for u in skipped],
               "duplicates_dropped": skill.provenance_.duplicates_dropped,
               **{k: round(v, 4) for k, v in skill.metrics_.items()}}  # fmt: skip
    if json_out:
        print_json(summary)
        return
    note = f", {len(skipped)} unreadable value(s) skipped" if skipped else ""
    out.print(
        f"[green]saved[/] {out_dir}  ({len(skill.specs_)} fields, {len(examples)} documents"
        f"{note}, {summary['train_seconds']} s)"
    )
    scores = [f"{k[7:]} {v:.3f}" for k, v in skill.metrics_.items() if k.startswith("val_f1_")]
    if scores:
        out.print("held-out field F1: " + ", ".join(scores))


@cli_command
def clauses(
    data: Annotated[
        Path, typer.Argument(help="JSONL of labelled clauses or CUAD-style contracts.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to save the skill to.")],
    base: Annotated[
        str, typer.Option(help="Encoder alias/folder/id, or 'none' for TF-IDF only.")
    ] = "minilm",
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Another parameter, key=value (min_df=1, c=4)."),
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    allow_pickle: Annotated[bool, typer.Option(help="Accept pickled base weights.")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing skill in --out.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
) -> None:
    """Train a contract clause finder (multi-label clause types)."""
    from slmstack.cli.train_generic import parse_assignments
    from slmstack.data.documents import read_clause_examples
    from slmstack.skills.clauses import ClauseFinder

    own = ("base", "seed", "allow_pickle")
    params = parse_assignments(ClauseFinder, tuple(sets or ()), own=own)
    prepare_out(out_dir, force)
    skill = ClauseFinder(
        base=None if base == "none" else base, seed=seed, allow_pickle=allow_pickle, **params
    )
    ClauseFinder.check_params(skill.get_params())  # they split the contracts: check them first
    # contracts are split into clauses as this finder will split them in predict
    skill.fit(read_clause_examples(data, min_chars=skill.min_chars, max_chars=skill.max_chars))
    skill.save(out_dir)
    summary = {"out": str(out_dir), "types": len(skill.types_),
               "train_seconds": round(skill.provenance_.seconds, 2),
               "duplicates_dropped": skill.provenance_.duplicates_dropped,
               **{k: round(v, 4) for k, v in skill.metrics_.items()}}  # fmt: skip
    if json_out:
        print_json(summary)
        return
    out.print(f"[green]saved[/] {out_dir}  ({summary['types']} clause types, "
              f"{summary['train_seconds']} s)")  # fmt: skip
    out.print(f"held-out clause micro-F1 {skill.metrics_['val_micro_f1']:.4f}")
