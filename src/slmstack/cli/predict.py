"""``slmstack predict DIR "text"`` or ``--input FILE``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from slmstack.cli.common import cli_command, out, print_json
from slmstack.data.utf8 import read_utf8, text_lines
from slmstack.errors import ConfigError


def _read_inputs(path: Path, text_column: str, *, documents: bool = False) -> list[str]:
    """One text per input line (``.txt``, or ``-`` for stdin) or row; blank lines stay.

    A blank line is a text (it abstains ``empty_input``), so that the outputs line up
    with the inputs; a ``null`` text is refused with its line. For a skill that reads
    ``documents`` (fields, clauses, compliance, summaries), a ``.txt`` file or stdin is
    one document.
    """
    from slmstack.data.readers import column_texts

    if str(path) == "-":
        text = sys.stdin.read()
        return [text] if documents else text_lines(text)
    if path.suffix.lower() == ".txt":  # a skill that reads documents reads the file whole
        text = read_utf8(path)
        return [text] if documents else text_lines(text)
    return column_texts(path, text_column, "--text-column")


@cli_command
def predict(
    skill_dir: Annotated[Path, typer.Argument(help="A saved skill folder.")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to run on.")] = None,
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help=".txt (one text per line; one document for document skills), CSV, TSV or "
            "JSONL; - reads stdin.",
        ),
    ] = None,
    text_column: Annotated[str, typer.Option()] = "text",
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="JSON: an array of one object per text, or one object per line with --input.",
        ),
    ] = False,
    allow_pickle: Annotated[
        bool, typer.Option(help="Allow pickled base weights (they can run code).")
    ] = False,
) -> None:
    """Run a saved skill on texts and show label, confidence and time."""
    from slmstack.skills.base import load

    if not texts and input_file is None:
        raise ConfigError('nothing to predict: pass texts ("...") or --input FILE')
    if texts and input_file is not None:
        raise ConfigError("pass either texts or --input FILE, not both")
    skill = load(skill_dir, allow_pickle=allow_pickle)
    documents = bool(getattr(skill, "reads_documents", False))
    items = list(texts or []) or _read_inputs(input_file, text_column, documents=documents)  # type: ignore[arg-type]
    if not items:
        raise ConfigError(f"nothing to predict: {input_file} holds no text")
    preds = skill.predict(items)
    if json_out:
        if input_file is not None:
            for text, p in zip(items, preds, strict=True):
                print(json.dumps({"input": text, **p.to_dict()}, ensure_ascii=False))
        else:
            print_json([{"input": t, **p.to_dict()} for t, p in zip(items, preds, strict=True)])
        return
    table = Table("text", "result", "confidence", "ms", "notes")
    for text, p in zip(items, preds, strict=True):
        spans = ", ".join(f"{s.label}:{s.text}" for s in p.spans)
        result = p.label or p.text or spans or (json.dumps(dict(p.data)) if p.data else "")
        if p.abstained:
            result = f"(abstained: {p.abstained})"
        table.add_row(  # texts and what came of them as written, never read as markup
            Text(text if len(text) < 60 else text[:57] + "..."),
            Text(str(result)),
            f"{p.confidence:.3f}",
            f"{p.usage.latency_ms:.1f}",
            Text("; ".join(p.warnings)),
        )
    out.print(table)
