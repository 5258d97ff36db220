"""``slmstack train recommend INTERACTIONS --items ITEMS --out DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slmstack.cli.common import cli_command, out, prepare_out, print_json

_OWN = ("base", "model", "features", "seed", "allow_pickle")  # options of their own


@cli_command
def recommend(
    data: Annotated[
        Path, typer.Argument(help="Interaction log: CSV/TSV/JSONL (user, item, time) or .inter.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to save the skill to.")],
    items: Annotated[
        Path | None,
        typer.Option(
            help="Item text: CSV/TSV/JSONL (item, title, category, description) or "
            "RecBole .text; optional for a .inter file with <dataset>.text beside it."
        ),
    ] = None,
    validation: Annotated[
        Path | None,
        typer.Option(
            help="Validation log (each user's last item is the target); default: "
            "hold out each user's last item."
        ),
    ] = None,
    base: Annotated[str, typer.Option(help="Sentence encoder for the item text.")] = "minilm",
    model: Annotated[str, typer.Option(help="'two_tower' or 'sequence'.")] = "two_tower",
    features: Annotated[str, typer.Option(help="'text', 'text+id' or 'id'.")] = "text",
    user_column: Annotated[str, typer.Option()] = "user",
    item_column: Annotated[str, typer.Option()] = "item",
    time_column: Annotated[
        str, typer.Option(help="Orders each user's items, if present.")
    ] = "time",
    id_column: Annotated[str, typer.Option(help="Item id column of --items.")] = "item",
    text_columns: Annotated[
        str, typer.Option(help="Comma-separated text columns of --items.")
    ] = "title,category,description",
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="Another parameter, key=value (epochs=20).")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    allow_pickle: Annotated[bool, typer.Option(help="Accept pickled base weights.")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing skill in --out.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
) -> None:
    """Train a recommender from an interaction log and item text (top-k next items)."""
    from slmstack.cli.train_generic import parse_assignments
    from slmstack.data.interactions import read_interactions
    from slmstack.skills.recommender import Recommender

    params = {
        "base": base,
        "model": model,
        "features": features,
        "seed": seed,
        "allow_pickle": allow_pickle,
        **parse_assignments(Recommender, tuple(sets or ()), own=_OWN),
    }
    Recommender.check_params(params)  # bad values before reading or training
    prepare_out(out_dir, force)
    columns = {"user_column": user_column, "item_column": item_column, "time_column": time_column}
    log = Recommender.read_training_data(
        data, items=items, id_column=id_column, text_columns=text_columns, **columns
    )
    val = read_interactions(validation, **columns) if validation is not None else None
    skill = Recommender(**params).fit(log, validation=val)
    skill.save(out_dir)
    summary = {
        "out": str(out_dir),
        "train_seconds": round(skill.provenance_.seconds, 2),
        **{k: round(v, 4) for k, v in skill.metrics_.items()},
    }
    if json_out:
        print_json(summary)
        return
    out.print(
        f"[green]saved[/] {out_dir}  ({summary['items']} items, {summary['users']} users, "
        f"{summary['train_seconds']} s)"
    )
    if "val_ndcg@10" in summary:
        out.print(
            f"validation Recall@10 {summary['val_recall@10']:.4f}  "
            f"NDCG@10 {summary['val_ndcg@10']:.4f}"
        )
