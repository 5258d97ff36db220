"""Shared CLI plumbing: one-line errors with a non-zero exit, JSON output, consoles."""

from __future__ import annotations

import functools
import json
import sys
import warnings
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from slmstack.errors import ConfigError, DataError

P = ParamSpec("P")
R = TypeVar("R")

out = Console()
err = Console(stderr=True)


def _show_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    err.print(Text("warning: ", style="yellow") + Text(str(message)), soft_wrap=True)


def _print_error(exc: BaseException) -> None:
    # Text, not markup: messages contain brackets (lists, paths) that rich would eat.
    err.print(Text("error: ", style="bold red") + Text(str(exc)), soft_wrap=True)


def cli_command(fn: Callable[P, R]) -> Callable[P, R]:
    """Show warnings as one ``warning: ...`` line each.

    Errors are reported by the root group in :mod:`slmstack.cli.app` (one ``error:``
    line and exit code 2, or the traceback with ``--debug``).
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        warnings.showwarning = _show_warning
        return fn(*args, **kwargs)

    return wrapper


def prepare_out(out_dir: Path, force: bool, flag: str = "--force") -> None:
    """Refuse an ``--out`` that saving would destroy, before any training starts."""
    from slmstack.artifacts import check_output_folder

    check_output_folder(out_dir, force=force, flag=flag)


def refuse_same(out: Path, source: Path, what: str, harm: str) -> None:
    """Refuse an ``--out`` that is the command's own input (``what``), which writing destroys."""
    if out.resolve() == source.resolve():
        raise ConfigError(f"--out {out} is {what}; {harm}. Pass another --out")


def dollars(text: str, flag: str) -> Decimal:
    """A non-negative, finite number of dollars given on the command line (``flag``)."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value < 0:
        raise ConfigError(
            f"{flag} must be a number of dollars, 0 or more, written plainly (12.50); got {text!r}"
        )
    return value


def beside(path: Path, suffix: str) -> Path:
    """The file next to ``path``, named after it plus ``suffix`` (``--out .`` included)."""
    folder = path.resolve()  # "." has no name of its own
    return folder.with_name(folder.name + suffix)


def check_html_target(path: Path | None, option: str = "--html") -> None:
    """Refuse an HTML report path that would overwrite a folder or a file that is no report.

    Called before the work, so a slip (``--html workflow.yaml``) costs nothing and loses
    nothing; an earlier HTML report at the path is replaced, as asked.
    """
    if path is None:
        return
    if path.is_dir():
        raise DataError(f"is a folder; pass a file for {option}, such as report.html", path=path)
    folder = next(p for p in path.absolute().parents if p.exists())
    if not folder.is_dir():  # the page's folder is made at the end: a file there would fail it
        raise DataError(f"{folder} is a file, not a folder; pass another {option} path", path=path)
    from slmstack.artifacts import refuse_inside_skill

    refuse_inside_skill(path, option)
    if path.exists():
        with path.open("rb") as fh:
            head = fh.read(64).lstrip().lower()
        if not head.startswith((b"<!doctype html", b"<html")):
            raise DataError(
                f"exists and is not an HTML report, so {option} will not overwrite it; pass "
                "another path, such as report.html (or move the file away)",
                path=path,
            )


def write_page(path: Path, page: str) -> None:
    """Write an HTML report (checked by :func:`check_html_target`), making its folder.

    Written aside and moved in place, so that a failure leaves the earlier page whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.writing")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)


def print_json(obj: Any) -> None:
    """Write JSON to stdout, unstyled, so it can be piped."""
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def key_values(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``key=value`` options (each value read as YAML: numbers, booleans, lists)."""
    import yaml

    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"{flag} {item!r} is not key=value; write e.g. {flag} n_ctx=2048 or "
                f"{flag} base_url=http://127.0.0.1:8080/v1"
            )
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(
                f"{flag} {item!r}: the value is read as YAML, which fails ({problem}); "
                f"quote the value to pass it as text: {flag} '{key.strip()}=\"{value}\"'"
            ) from None
    return options


def given_options(ctx: typer.Context) -> set[str]:
    """The parameters of the running command that were set on its command line."""
    return {
        name for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"
    }  # fmt: skip
