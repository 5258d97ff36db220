"""``slmstack distill``: an LLM teacher labels texts, a small student learns from it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from slmstack.cli.common import cli_command, out, prepare_out, print_json
from slmstack.errors import DataError


def _read(
    path: Path, text_column: str, gold_column: str | None
) -> tuple[list[str], list[str | None] | None]:
    from slmstack.data.readers import read_records

    records = read_records(path)
    texts, gold = [], []
    for r in records:
        text = r.fields.get(text_column)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"no text in column {text_column!r}; every row needs one "
                            "(--text-column names it)", path=path, row=r.line)  # fmt: skip
        texts.append(text)
        value = r.fields.get(gold_column) if gold_column else None
        gold.append(str(value) if value not in (None, "") else None)
    return texts, (gold if gold_column and any(gold) else None)


@cli_command
def distill_command(
    data: Annotated[Path, typer.Argument(help="Texts to label (CSV, TSV or JSONL).")],
    teacher: Annotated[Path, typer.Option(help="A saved teacher skill (e.g. an LLMClassifier).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to save the student to.")],
    student: Annotated[str, typer.Option(help="The student's skill kind.")] = "TextClassifier",
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="A student parameter, key=value.")
    ] = None,
    text_column: Annotated[str, typer.Option()] = "text",
    gold_column: Annotated[
        str | None, typer.Option(help="Gold labels, where the data has some, to score both.")
    ] = None,
    labelled: Annotated[
        Path | None, typer.Option(help="Gold examples the student also learns from (text,label).")
    ] = None,
    cache: Annotated[
        Path | None, typer.Option(help="Teacher label cache (default: beside --out).")
    ] = None,
    held_out: Annotated[float, typer.Option(help="Share of texts held out to score.")] = 0.2,
    min_confidence: Annotated[
        float, typer.Option(help="Leave out teacher labels below this confidence.")
    ] = 0.0,
    prices: Annotated[
        Path | None, typer.Option(help="Your price table (YAML), over the packaged one.")
    ] = None,
    machine: Annotated[str | None, typer.Option(help="The machine local models run on.")] = None,
    allow_pickle: Annotated[bool, typer.Option(help="Allow pickled base weights.")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing skill in --out.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Label DATA with the teacher (cached, costed), train the student, and measure it.

    Labels are cached, so nothing is paid for twice and an interrupted run resumes.
    """
    from slmstack import registry
    from slmstack.cli.train_generic import parse_assignments
    from slmstack.distill import TeacherCache, distill, teacher_id
    from slmstack.skills.base import load
    from slmstack.workflows.metering import Meter

    prepare_out(out_dir, force)
    cls = registry.skills.get(registry.skills.resolve_name(student))
    params = parse_assignments(cls, tuple(sets or ()))
    cls.check_params(params)
    texts, gold = _read(data, text_column, gold_column)
    teacher_skill = load(teacher, allow_pickle=allow_pickle)
    meter = Meter("distill", skills={"teacher": teacher_skill}, backends={},
                  prices=prices, machine=machine)  # fmt: skip
    identity = teacher_id(teacher_skill.skill_name, teacher_skill.get_params(),
                          teacher_skill.provenance_.data_sha256)  # fmt: skip
    cache_path = cache or out_dir.with_name(out_dir.name + ".teacher-labels.jsonl")
    seed_set = cls.read_training_data(labelled) if labelled is not None else []
    student_skill = cls(**params)
    report = distill(
        teacher_skill, student_skill, texts, cache=TeacherCache(cache_path), identity=identity,
        cost_of=lambda p, s: meter.skill_cost(
            "teacher", p.usage.input_tokens, p.usage.output_tokens, s),
        gold=gold, held_out=held_out, min_confidence=min_confidence, labelled=seed_set,
    )  # fmt: skip
    student_skill.save(out_dir)
    summary: dict[str, Any] = {"student": str(out_dir), "cache": str(cache_path),
                               "prices": meter.prices.version, **report.to_json()}  # fmt: skip
    if json_out:
        print_json(summary)
        return
    out.print(f"[green]saved[/] {out_dir}  (trained on {report.train_texts} teacher labels)")
    out.print(f"agreement with the teacher on {report.held_out_texts} held-out texts: "
              f"{report.agreement_with_teacher:.4f}")  # fmt: skip
    if report.student_gold_accuracy is not None:
        out.print(f"gold accuracy: student {report.student_gold_accuracy:.4f}, teacher "
                  f"{report.teacher_gold_accuracy:.4f}")  # fmt: skip
    out.print(
        f"teacher cost: ${report.teacher_cost_usd} (this run "
        f"${report.teacher_cost_this_run_usd}, {report.teacher_labels_bought} labels bought; "
        f"prices {meter.prices.version})"
    )
