"""``slmstack train KIND DATA --out DIR --set key=value``: any registered skill.

The command is built from the skill class itself: its parameters (names, types,
defaults and help) come from ``__init__``, its data from ``read_training_data``. So a
third-party skill registered under the ``slmstack.skills`` entry-point group trains from
the command line with no line of slmstack changed. The named commands
(``train classify``, ``train tag``, ...) are kept as aliases with friendlier options.
"""

from __future__ import annotations

import inspect
import time
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main
import yaml
from typer.core import TyperGroup

from slmstack import registry
from slmstack.cli.common import cli_command, out, print_json
from slmstack.errors import ConfigError
from slmstack.skills.params import Param, literal_choices


def parse_assignments(
    cls: Any, items: tuple[str, ...], flag: str = "--set", *, own: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``("epochs=3", "strategy=finetune")`` → typed values by the class's signature.

    ``own``: parameters the command sets with options of their own (``seed`` →
    ``--seed``); setting one here too is refused rather than overriding either in silence.
    """
    params = {p.name: p for p in cls.parameters()}
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"{flag} takes key=value, got {item!r}. Example: {flag} epochs=3")
        if key in own:
            option = "--" + key.replace("_", "-")
            raise ConfigError(f"{flag} {item!r}: {key} has its own option; pass {option} instead")
        if key not in params:
            cls.check_params({key: None})  # the did-you-mean message
        values[key] = convert(params[key], raw)
    return values


def convert(param: Param, raw: str) -> Any:
    """Turn a command-line string into the type the parameter's hint asks for."""
    hint = param.annotation
    optional = typing.get_origin(hint) in (types.UnionType, typing.Union) and type(
        None
    ) in typing.get_args(hint)
    if optional and raw.lower() in ("none", "null", ""):
        return None
    if optional:
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else Any
    choices = literal_choices(hint)
    if choices:
        for choice in choices:
            if str(choice) == raw:
                return choice
        return raw  # the parameter check names the allowed values
    if hint is str:
        return raw
    if hint is float:
        try:
            return float(raw)
        except ValueError:
            return raw
    if hint is bool:
        lowered = raw.lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def params_help(cls: Any) -> str:
    """A table of the parameters, for ``--help``."""
    lines = [f"Parameters of {cls.__name__} (--set key=value):", ""]
    for p in cls.parameters():
        default = "" if p.default is inspect.Parameter.empty else f" = {p.default!r}"
        lines.append(f"  {p.name}: {p.type_name()}{default}")
        if p.help:
            lines.append(f"      {p.help}")
    return "\n".join(lines)


@cli_command
def train_skill(
    kind: str,
    data: Path | None,
    out_dir: Path,
    sets: tuple[str, ...],
    reads: tuple[str, ...],
    force: bool,
    json_out: bool,
) -> None:
    """Train any registered skill kind from a data file and save it."""
    from slmstack.artifacts import check_output_folder

    cls = registry.skills.get(registry.skills.resolve_name(kind))
    params = parse_assignments(cls, sets)
    cls.check_params(params)
    check_output_folder(out_dir, force=force)
    start = time.perf_counter()
    if data is None:
        if not cls.trains_on_nothing:
            raise ConfigError(f"{cls.__name__} trains from a file: pass DATA.")
        examples: Any = []
    skill = cls(**params)
    if data is not None:
        examples = skill.training_data(data, **_read_options(cls, reads))
    skill.fit(examples)
    skill.save(out_dir)
    metrics = {k: v for k, v in skill.provenance_.metrics.items() if isinstance(v, int | float)}
    summary = {
        "skill": cls.skill_name,
        "out": str(out_dir),
        "seconds": round(time.perf_counter() - start, 2),
        "rows": skill.provenance_.rows,
        "duplicates_dropped": skill.provenance_.duplicates_dropped,
        **{k: round(v, 4) for k, v in metrics.items()},
    }
    if json_out:
        print_json(summary)
        return
    out.print(f"[green]saved[/] {out_dir}  ({cls.__name__}, {summary['seconds']} s)")
    for key, value in summary.items():
        if key not in ("skill", "out", "seconds"):
            out.print(f"  {key}: {value}")


def generic_command(kind: str) -> Any:
    """The command that trains ``kind``, or ``None`` when no skill has that name."""
    try:
        name = registry.skills.resolve_name(kind)
        cls = registry.skills.get(name)
    except ConfigError:
        return None
    app = typer.Typer(add_completion=False)

    @app.command(name=kind, help=f"Train {cls.__name__} ({name}).\n\n{params_help(cls)}")
    def _train(
        out_dir: Annotated[Path, typer.Option("--out", help="Folder to save the skill to "
                                              "(refused if it holds other files).")],
        data: Annotated[Path | None, typer.Argument(help="Training data file or folder.")] = None,
        sets: Annotated[list[str] | None, typer.Option("--set", help="A parameter, key=value; "
                                                       "repeat for more.")] = None,
        reads: Annotated[list[str] | None, typer.Option("--read", help="A data-reader option, "
                                                        "key=value (text_column=...).")] = None,
        force: Annotated[bool, typer.Option(help="Replace an existing skill in --out.")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
    ) -> None:  # fmt: skip
        train_skill(name, data, out_dir, tuple(sets or ()), tuple(reads or ()), force, json_out)

    return typer.main.get_command(app)


class TrainGroup(TyperGroup):
    """``train`` sub-commands: the named aliases, then any registered skill kind."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The alias named ``cmd_name``, or the generic command of that skill kind."""
        return super().get_command(ctx, cmd_name) or generic_command(cmd_name)

    def get_help(self, ctx: Any) -> str:
        """The help, ending with the skill kinds the generic form accepts."""
        kinds = ", ".join(sorted(registry.skills.short_names()))
        self.epilog = (
            "Any skill kind also works: slmstack train KIND DATA --out DIR --set key=value. "
            f"Kinds: {kinds} (or their full names); slmstack train KIND --help lists its "
            "parameters."
        )
        return super().get_help(ctx)


def _read_options(cls: Any, reads: tuple[str, ...]) -> dict[str, str]:
    """``--read key=value`` items, checked against the reader's own parameters."""
    import inspect

    params = list(inspect.signature(cls.read_training_data).parameters.values())[1:]  # not the file
    loose = any(p.kind is p.VAR_KEYWORD for p in params)
    accepted = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    options = {}
    for item in reads:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--read takes key=value, got {item!r}; e.g. --read text_column=body")
        if key not in accepted and not loose:
            known = ", ".join(accepted) or "none"
            raise ConfigError(
                f"--read {key}: {cls.__name__}'s reader has no such option (it takes: {known})"
            )
        options[key] = value
    return options
