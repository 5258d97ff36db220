"""``slmstack train ...``: one sub-command per skill kind."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from slmstack.cli import lora, retrieval, train_extract, train_recommend
from slmstack.cli.common import (
    cli_command,
    given_options,
    out,
    prepare_out,
    print_json,
    refuse_same,
)
from slmstack.cli.comply import train_comply
from slmstack.cli.train_generic import TrainGroup

if TYPE_CHECKING:
    from slmstack.skills.classifier import TextClassifier
    from slmstack.skills.static_classifier import StaticTextClassifier

app = typer.Typer(cls=TrainGroup, help="Train a skill from a data file.", no_args_is_help=True)


@app.command("classify")
@cli_command
def classify(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="CSV, TSV or JSONL file of labelled texts.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to save the skill to.")],
    base: Annotated[
        str,
        typer.Option(
            help="Alias, local folder or Hugging Face id; 'static' or 'static:<encoder>' "
            "trains on static embeddings distilled from the encoder (predicts without torch)."
        ),
    ] = "minilm",
    strategy: Annotated[
        str,
        typer.Option(
            help="'head' (seconds), 'finetune', 'fewshot' (tens of examples per label: "
            "contrastive pair tuning, then the head) or 'auto' (the one measured best: "
            "head at every size tried, 2 to 20 examples per label)."
        ),
    ] = "head",
    text_column: Annotated[str, typer.Option()] = "text",
    label_column: Annotated[str, typer.Option()] = "label",
    epochs: Annotated[int, typer.Option(help="Maximum epochs (finetune, fewshot).")] = 5,
    learning_rate: Annotated[
        float | None,
        typer.Option("--lr", help="Encoder learning rate (default 5e-5; fewshot 1e-4)."),
    ] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    max_length: Annotated[int, typer.Option(help="Token window; longer texts are reported.")] = 128,
    val_fraction: Annotated[float, typer.Option()] = 0.1,
    precision: Annotated[
        str, typer.Option(help="fp32, bf16, or auto (bf16 if the CPU has it natively).")
    ] = "fp32",
    scope_alpha: Annotated[
        float,
        typer.Option(
            help="Share of in-scope texts flagged out of scope (the prediction abstains "
            "with 'out_of_scope'); 0 turns the flag off."
        ),
    ] = 0.01,
    name_examples: Annotated[
        bool,
        typer.Option(
            help="Read each label's name as words ('card_arrival' is 'card arrival') and add "
            "it to the head's examples (head/fewshot) or to the training rows (finetune); "
            "helps at a few examples per label."
        ),
    ] = False,
    seed: Annotated[int, typer.Option()] = 0,
    resume: Annotated[
        Path | None, typer.Option(help="Continue training this saved skill with DATA.")
    ] = None,
    teacher: Annotated[
        Path | None,
        typer.Option(
            help="A saved classifier over the same labels (often a larger encoder) whose "
            "soft labels the finetune student also learns from."
        ),
    ] = None,
    distill_weight: Annotated[
        float, typer.Option(help="With --teacher: share of the soft labels in the loss.")
    ] = 0.5,
    distill_temperature: Annotated[
        float, typer.Option(help="With --teacher: temperature that softens its labels.")
    ] = 2.0,
    allow_new_labels: Annotated[
        bool, typer.Option(help="With --resume: accept labels the skill has not seen.")
    ] = False,
    allow_pickle: Annotated[bool, typer.Option(help="Accept pickled base weights.")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing skill in --out.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
) -> None:
    """Train a single-label text classifier (intent, sentiment, ...)."""
    from slmstack.errors import ConfigError
    from slmstack.skills.classifier import TextClassifier

    if resume is not None and out_dir.resolve() == resume.resolve():
        raise ConfigError("--out must differ from --resume, so the original is kept")
    if teacher is not None and resume is not None:
        raise ConfigError("--teacher trains a new --strategy finetune skill; drop --resume")
    if teacher is not None:
        refuse_same(out_dir, teacher, "the teacher's folder", "the student would replace it")
    if teacher is not None and strategy != "finetune":
        raise ConfigError(
            f"--teacher distils into a fine-tuned encoder: add --strategy finetune (got {strategy})"
        )
    static = None
    if base == "static" or base.startswith("static:"):
        static = _static_classifier(base, strategy, resume, val_fraction, seed, allow_pickle)
        if name_examples:
            raise ConfigError(f"--name-examples needs a transformer --base, not {base}; drop it")
    if resume is None:  # a resumed skill is checked against its own strategy, once loaded
        _refuse_unused(given_options(ctx), base, strategy)
    prepare_out(out_dir, force)
    examples = TextClassifier.read_training_data(
        data, text_column=text_column, label_column=label_column
    )
    skill: TextClassifier | StaticTextClassifier
    if static is not None:
        skill = static.fit(examples)
    elif resume is not None:
        skill = TextClassifier.load(resume, allow_pickle=allow_pickle)
        # Only what was given on the command line changes; what the saved skill is made
        # of (its base, strategy, window and precision) cannot change by resuming.
        given = given_options(ctx)
        fixed = sorted(given & {"base", "strategy", "max_length", "precision"})
        if fixed:
            flags = ", ".join("--" + f.replace("_", "-") for f in fixed)
            raise ConfigError(
                f"{flags} cannot change when resuming {resume} (it keeps what it was trained "
                "with); drop them, or train a new skill without --resume"
            )
        kept = {"epochs": epochs, "seed": seed, "scope_alpha": scope_alpha,
                "batch_size": batch_size, "val_fraction": val_fraction}  # fmt: skip
        if skill.strategy_ == "head":
            _refuse_unused(given, base, "head", f"{resume} keeps its strategy when resumed; "
                           "train a new skill with --strategy finetune")  # fmt: skip
        changes = {k: v for k, v in kept.items() if k in given}
        if "learning_rate" in given and learning_rate is not None:
            changes[_rate_param(skill.strategy_)] = learning_rate
        if name_examples:
            changes["name_examples"] = True
        skill.set_params(**changes)
        skill.resume(examples, allow_new_labels=allow_new_labels)
    else:
        rates: dict[str, Any] = {}
        if learning_rate is not None:
            rates[_rate_param(strategy)] = learning_rate
        skill = TextClassifier(
            base=base,
            strategy=strategy,  # type: ignore[arg-type]
            epochs=epochs,
            **rates,
            batch_size=batch_size,
            max_length=max_length,
            val_fraction=val_fraction,
            precision=precision,  # type: ignore[arg-type]
            scope_alpha=scope_alpha,
            name_examples=name_examples,
            seed=seed,
            allow_pickle=allow_pickle,
            distill_weight=distill_weight,
            distill_temperature=distill_temperature,
        ).fit(examples, teacher=_teacher(teacher, allow_pickle))
    skill.save(out_dir)
    summary = {
        "out": str(out_dir),
        "labels": len(skill.classes_),
        "train_seconds": round(skill.provenance_.seconds, 2),
        "duplicates_dropped": skill.provenance_.duplicates_dropped,
        **{k: round(v, 4) for k, v in skill.metrics_.items() if isinstance(v, float | int)},
    }
    if json_out:
        print_json(summary)
        return
    out.print(
        f"[green]saved[/] {out_dir}  ({summary['labels']} labels, {summary['train_seconds']} s)"
    )
    out.print(
        f"validation accuracy {summary['val_accuracy']:.4f}  macro-F1 "
        f"{summary['val_macro_f1']:.4f}  ECE {summary['val_ece_before_calibration']:.4f} → "
        f"{summary['val_ece']:.4f} after calibration (T={summary['temperature']:.3f}, fitted on "
        "the same validation texts)"
    )


def _teacher(folder: Path | None, allow_pickle: bool) -> TextClassifier | None:
    """The saved classifier whose soft labels a student learns from, if any."""
    from slmstack import load
    from slmstack.errors import ConfigError
    from slmstack.skills.classifier import TextClassifier

    if folder is None:
        return None
    skill = load(folder, allow_pickle=allow_pickle)
    if not isinstance(skill, TextClassifier):
        raise ConfigError(
            f"--teacher {folder} is a {type(skill).__name__}; a teacher must be a text "
            "classifier saved by 'slmstack train classify' over the same labels."
        )
    return skill


def _refuse_unused(
    given: set[str], base: str, strategy: str, fix: str = "add --strategy finetune"
) -> None:
    """Refuse options the chosen kind of training would ignore in silence."""
    from slmstack.errors import ConfigError

    if base == "static" or base.startswith("static:"):
        unused = given & {"epochs", "learning_rate", "batch_size", "max_length", "precision",
                          "scope_alpha", "distill_weight", "distill_temperature"}  # fmt: skip
        why = f"--base {base} (static embeddings and a linear head)"
    elif strategy in ("head", "auto"):
        unused = given & {"epochs", "learning_rate"}
        why = f"--strategy {strategy} (a frozen encoder: a probe is fitted, nothing is tuned)"
    else:
        return
    if unused:
        flags = ", ".join("--lr" if f == "learning_rate" else "--" + f.replace("_", "-")
                          for f in sorted(unused))  # fmt: skip
        raise ConfigError(f"{flags} do not apply to {why}; drop them, or {fix}")


def _rate_param(strategy: str) -> str:
    """The parameter ``--lr`` sets: ``fewshot`` tunes the encoder at its own pair rate."""
    return "pair_learning_rate" if strategy in ("fewshot", "auto") else "learning_rate"


def _static_classifier(
    base: str,
    strategy: str,
    resume: Path | None,
    val_fraction: float,
    seed: int,
    allow_pickle: bool,
) -> StaticTextClassifier:
    """A ``StaticTextClassifier`` for ``--base static[:<encoder>]``."""
    from slmstack.errors import ConfigError
    from slmstack.skills.static_classifier import StaticTextClassifier

    if strategy != "head":
        raise ConfigError(
            f"--base {base} trains a linear head on static embeddings; --strategy {strategy} "
            "needs a transformer. Use --strategy head, or a transformer --base such as minilm."
        )
    if resume is not None:
        raise ConfigError(
            f"--base {base} cannot --resume (a static classifier retrains in seconds); "
            "train it again on the old and new data together."
        )
    encoder = base.partition(":")[2] or "minilm"
    return StaticTextClassifier(
        base=encoder, val_fraction=val_fraction, seed=seed, allow_pickle=allow_pickle
    )


app.command("lora")(lora.lora)
app.command("faq")(retrieval.train_faq)
app.command("troubleshoot")(retrieval.train_troubleshoot)
app.command("tag")(train_extract.tag)
app.command("fields")(train_extract.fields)
app.command("clauses")(train_extract.clauses)
app.command("recommend")(train_recommend.recommend)
app.command("comply")(train_comply)
