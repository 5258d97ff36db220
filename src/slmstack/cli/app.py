"""Root of the ``slmstack`` command line."""

from __future__ import annotations

import typer

from slmstack.cli import evaluate, models, predict, train
from slmstack.cli import inbox as inbox_cli
from slmstack.cli import run as run_cli

app = typer.Typer(
    name="slmstack",
    help="Train, evaluate and run stacks of small task-specific language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(train.app, name="train")
app.command("predict")(predict.predict)
app.command("eval")(evaluate.evaluate)
app.command("models")(models.models)
app.command("run")(run_cli.run)
app.add_typer(inbox_cli.app, name="inbox")


def main() -> None:
    """Console-script entry point."""
    app()
