"""``slmstack augment``: a generator rewrites each labelled example.

The originals and the rewrites are written as JSONL that a training command reads as it
is. The output is written as it goes, one example and its rewrites at a time, so an
interrupted run keeps what it made; run the same command again and it goes on from the
first example not yet in the file (``--force`` starts over). The settings of the run are
kept beside it (``OUT.settings.json``): going on with other ones is refused.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from slmstack.cli.common import cli_command, key_values, out, print_json, refuse_same
from slmstack.data.jsonl_log import read_log
from slmstack.errors import ConfigError

_ROW_KEYS = {"text", "label", "source", "augmented_from"}


class _LazyFile:
    """A text file opened (and, in mode ``w``, emptied) only when first written to."""

    def __init__(self, path: Path, mode: str, on_open: Callable[[], None] | None = None):
        self.path, self.mode, self.on_open = path, mode, on_open
        self._file: Any = None

    def __enter__(self) -> _LazyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()

    def write(self, text: str) -> None:
        if self._file is None:
            if self.on_open is not None:
                self.on_open()
            self._file = self.path.open(self.mode, encoding="utf-8")
        self._file.write(text)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()


def _done(path: Path) -> set[str]:
    """The sources of the originals already written to ``path`` (to resume).

    A last line cut off mid-write (the run was killed) is truncated away first.
    """
    rows = read_log(
        path, _augment_row, kind="a file `slmstack augment` wrote",
        fix="it is neither resumed nor overwritten. Pass another --out, or --force to "
        "overwrite it",
    )  # fmt: skip
    return {_same_file(str(row.get("source"))) for row in rows if row["augmented_from"] is None}


def _augment_row(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict) or not row.keys() >= _ROW_KEYS:
        raise ValueError("it lacks the text, label, source and augmented_from keys")
    return row


def _same_file(source: str) -> str:
    """``FILE:LINE`` with FILE resolved: ``data.csv:3`` and ``./data.csv:3`` are one row."""
    file, sep, line = source.rpartition(":")
    return f"{Path(file).resolve()}:{line}" if sep and file else source


def _settings_file(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".settings.json")


def _note_settings(out_path: Path, settings: dict[str, Any]) -> None:
    """Keep a new file's settings beside it (when its first row is written)."""
    text = json.dumps(settings, indent=1) + "\n"
    _settings_file(out_path).write_text(text, encoding="utf-8")


def _same_settings(out_path: Path, settings: dict[str, Any], *, resuming: bool) -> None:
    """Refuse to go on with a file made with other settings (see ``_note_settings``).

    A resumed run appends to what the first one wrote: with another model, or another
    number of rewrites, one file would mix two recipes and nobody could tell which rows
    came from which.
    """
    path = _settings_file(out_path)
    if resuming and path.is_file():
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read the settings --out was made with ({exc}); "
                              "pass --force to start over") from None  # fmt: skip
        changed = sorted(k for k in settings if before.get(k) != settings[k])
        if changed:
            was = ", ".join(f"{k}={before.get(k)!r}" for k in changed)
            now = ", ".join(f"{k}={settings[k]!r}" for k in changed)
            raise ConfigError(
                f"{out_path} was made with {was}; this run asks {now}. Pass the same "
                "settings to go on with it, --force to start over, or another --out"
            )


@cli_command
def augment_command(
    data: Annotated[Path, typer.Argument(help="Labelled examples (CSV, TSV or JSONL).")],
    out_path: Annotated[Path, typer.Option("--out", help="JSONL to write (or go on with).")],
    model: Annotated[str, typer.Option(help="The generator: an alias, GGUF file or name.")] = (
        "qwen2.5-0.5b"
    ),
    runtime: Annotated[
        str, typer.Option(help="llama_cpp, transformers, or openai (with --option base_url=...)")
    ] = "llama_cpp",
    option: Annotated[
        list[str] | None, typer.Option("--option", help="A backend option, key=value (YAML).")
    ] = None,
    per_example: Annotated[int, typer.Option(help="Rewrites asked of each example.")] = 3,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    seed: Annotated[int, typer.Option()] = 0,
    text_column: Annotated[str, typer.Option()] = "text",
    label_column: Annotated[str, typer.Option()] = "label",
    force: Annotated[bool, typer.Option(help="Overwrite --out instead of going on.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Rewrite each example PER-EXAMPLE ways with a generator, keeping its label.

    Copies of the original, empty rewrites and run-away ones are dropped and counted.
    Rewrites carry ``augmented_from`` (the original's source); train on the file as it
    is, and compare with the originals alone before you keep it: a small generator's
    rewrites can change the intent.
    """
    from slmstack.backends import load_backend
    from slmstack.costs.prices import from_nano
    from slmstack.costs.report import money, usd
    from slmstack.data.readers import read_examples
    from slmstack.data.validation import refuse_unusable_rows
    from slmstack.distill.augment import augment
    from slmstack.types import Usage
    from slmstack.workflows.metering import Meter

    # Empty texts and labels are refused; one example per label is fine (the point of it).
    examples = read_examples(
        data, text_column=text_column, label_column=label_column, validate=False
    )
    refuse_unusable_rows(examples, path=data)
    refuse_same(out_path, data, "the data file itself", "the rewrites would replace the examples")
    if not 0 <= temperature <= 2:
        raise ConfigError(f"--temperature must be between 0 and 2; got {temperature}")
    backend_options = key_values(option, "--option")
    done = _done(out_path) if out_path.exists() and not force else set()
    settings = {"model": model, "runtime": runtime, "options": sorted(option or ()),
                "per_example": per_example, "temperature": temperature, "seed": seed}  # fmt: skip
    _same_settings(out_path, settings, resuming=bool(done))
    # each example keeps its position in the file, which seeds its generation: a resumed
    # run writes what one uninterrupted run would have
    positions = [i for i, ex in enumerate(examples) if _same_file(str(ex.source)) not in done]
    todo = [examples[i] for i in positions]
    backend = load_backend(model, runtime=runtime, **backend_options)
    # Priced before the first call: an unpriced paid API is refused, as in a workflow.
    meter = Meter("augment", skills={}, backends={"generator": backend})
    counts: Counter[str] = Counter()

    def spent(usage: Usage, seconds: float) -> None:
        counts["tokens_in"] += usage.input_tokens
        counts["tokens_out"] += usage.output_tokens
        cost = meter.backend_cost("generator", usage.input_tokens, usage.output_tokens, seconds,
                                  usage.by_model)  # fmt: skip
        counts["cost_nano_usd"] += cost

    out_path.parent.mkdir(parents=True, exist_ok=True)
    # The file is opened at the first row to write: a run that fails before it (a server
    # that refuses) leaves --out as it was, even with --force.
    fresh = force or not done
    note = partial(_note_settings, out_path, settings) if fresh else None
    with _LazyFile(out_path, "w" if fresh else "a", note) as f:
        for ex, rewrites, dropped in augment(
            todo,
            backend,
            per_example,
            temperature=temperature,
            seed=seed,
            spent=spent,
            positions=positions,
        ):
            rows = [{"text": ex.text, "label": ex.label, "source": ex.source,
                     "augmented_from": None}]  # fmt: skip
            rows += [{"text": r.text, "label": r.label, "source": r.source,
                      "augmented_from": ex.source} for r in rewrites]  # fmt: skip
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            f.flush()
            counts["examples"] += 1
            counts["rewrites_kept"] += len(rewrites)
            counts.update({f"dropped_{k}": v for k, v in dropped.items()})
    cost = from_nano(counts.pop("cost_nano_usd", 0))
    summary = {"out": str(out_path), "model": model, "already_done": len(examples) - len(todo),
               "cost_usd": usd(cost), "prices": meter.prices.version,
               **dict(sorted(counts.items()))}  # fmt: skip
    if json_out:
        print_json(summary)
        return
    out.print(
        f"[green]wrote[/] {out_path}: {counts['examples']} examples, "
        f"{counts['rewrites_kept']} rewrites kept"
        + (f" ({len(examples) - len(todo)} examples were already there)" if done else "")
    )
    out.print(
        f"generator: {counts['tokens_in']:,} tokens in, {counts['tokens_out']:,} out, "
        f"{money(cost)} (prices {meter.prices.version})",
        highlight=False,
    )
    drops = {k[8:]: v for k, v in counts.items() if k.startswith("dropped_")}
    if drops:
        out.print("dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(drops.items())))
