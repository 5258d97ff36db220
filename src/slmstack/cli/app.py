"""Root of the ``slmstack`` command line, and its one error handler.

Every command runs inside :class:`_Root`: an error the user can fix (any
:class:`~slmstack.errors.SlmstackError`, or an OS error such as a read-only folder) is
printed as one ``error: ...`` line on stderr and exits with code 2. ``--debug`` shows
the traceback instead.
"""

from __future__ import annotations

import traceback
from importlib.metadata import version as package_version
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from slmstack.cli import batch as batch_cli
from slmstack.cli import cost, evaluate, inbox_examples, models, predict, train
from slmstack.cli import inbox as inbox_cli
from slmstack.cli import migration as migration_cli
from slmstack.cli import proxy as proxy_cli
from slmstack.cli import run as run_cli
from slmstack.cli import schema as schema_cli
from slmstack.cli import serve as serve_cli
from slmstack.cli import tune as tune_cli
from slmstack.cli.augment import augment_command
from slmstack.cli.common import err
from slmstack.cli.comply import comply as comply_command
from slmstack.cli.discover import discover as discover_command
from slmstack.cli.distill import distill_command
from slmstack.cli.export import export as export_command
from slmstack.errors import SlmstackError


def _error_line(message: str) -> None:
    # Text, not markup: messages hold brackets (lists, paths) that rich would eat.
    from rich.text import Text

    err.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)


class _Root(TyperGroup):
    """The root group: turns errors from any command into ``error: ...`` and exit 2."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command; report what escapes it."""
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, BrokenPipeError) as exc:
            # Exit (what `cli_command` raises once it has printed its error), usage errors
            # and Ctrl-C are typer's to report; a closed pipe is not an error.
            if ctx.params.get("debug") and exc.__context__ is not None:
                traceback.print_exception(exc.__context__)
            raise
        except (SlmstackError, OSError) as exc:
            if ctx.params.get("debug"):
                traceback.print_exception(exc)
            else:
                _error_line(_message(exc))
            raise typer.Exit(2) from None
        except Exception as exc:
            # A bug, not bad input: still one line, and the way to the traceback.
            if ctx.params.get("debug"):
                traceback.print_exception(exc)
            else:
                _error_line(
                    f"unexpected {type(exc).__name__}: {_message(exc)}. This is a bug in slmstack; "
                    "run again with `slmstack --debug ...` and report the traceback"
                )
            raise typer.Exit(1) from None


def _message(exc: BaseException) -> str:
    """``out.jsonl: Permission denied``, as Unix tools say it, rather than ``[Errno 13] ...``.

    The error's notes follow in brackets: a workflow notes there the step that failed.
    """
    notes = "".join(f" ({note})" for note in getattr(exc, "__notes__", ()))
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        files = f"{exc.filename} → {exc.filename2}" if exc.filename2 else f"{exc.filename}"
        return f"{files}: {exc.strerror}{notes}"
    return f"{exc}{notes}"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"slmstack {package_version('slmstack')}")
        raise typer.Exit()


app = typer.Typer(
    name="slmstack",
    help="Train, evaluate and run stacks of small task-specific language models.",
    cls=_Root,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of an error.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Train, evaluate and run stacks of small task-specific language models."""


app.add_typer(train.app, name="train")
app.command("predict")(predict.predict)
app.command("eval")(evaluate.evaluate)
app.command("models")(models.models)
app.command("run")(run_cli.run)
app.command("batch")(batch_cli.batch)
app.add_typer(inbox_cli.app, name="inbox")
inbox_cli.app.command("export-examples")(inbox_examples.export_examples)
app.add_typer(schema_cli.app, name="schema")
app.add_typer(tune_cli.app, name="tune")
app.command("distill")(distill_command)
app.command("augment")(augment_command)
app.command("export")(export_command)
app.add_typer(cost.app, name="cost")
app.command("serve")(serve_cli.serve)
app.add_typer(proxy_cli.app, name="proxy")
app.command("discover")(discover_command)
app.command("promote")(proxy_cli.promote)
app.add_typer(migration_cli.app, name="migration")
app.command("comply")(comply_command)


def main() -> None:
    """Console-script entry point."""
    app()
