"""``slmstack distill``: an LLM teacher labels texts, a small student learns from it.

Two sources of labels: a teacher skill run on DATA (``--teacher``), or the answers the
LLM already gave to a discovered task's recorded calls (``--task T --tasks tasks.json
--ledger URL``: nothing is bought).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from slmstack.cli.common import beside, cli_command, out, prepare_out, print_json, refuse_same
from slmstack.errors import ConfigError, DataError


def _read(
    path: Path, text_column: str, gold_column: str | None
) -> tuple[list[str], list[str | None] | None]:
    from slmstack.data.readers import read_records

    records = read_records(path)
    if gold_column and records and gold_column not in records[0].fields:
        raise DataError(
            f"no column {gold_column!r} for --gold-column; the file has "
            f"{', '.join(map(repr, records[0].fields))}",
            path=path,
        )
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
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to save the student to.")],
    data: Annotated[
        Path | None, typer.Argument(help="Texts to label (CSV, TSV or JSONL); not with --task.")
    ] = None,
    teacher: Annotated[
        Path | None, typer.Option(help="A saved teacher skill (e.g. an LLMClassifier).")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(help="Learn this discovered task from its recorded LLM answers instead."),
    ] = None,
    ledger: Annotated[
        str, typer.Option(help="With --task: the proxy's database (URL or SQLite file).")
    ] = "sqlite:///slmstack-proxy.db",
    tasks: Annotated[
        Path | None, typer.Option(help="With --task: the output of `slmstack discover --json`.")
    ] = None,
    mask_key_env: Annotated[
        str | None,
        typer.Option(help="With --task: unmask masked calls with the key in this variable."),
    ] = None,
    seed: Annotated[int, typer.Option(help="With --task: seed of the held-out split.")] = 0,
    student: Annotated[
        str | None,
        typer.Option(
            help="The student's skill kind (default: TextClassifier; with --task "
            "FieldExtractor for an extraction)."
        ),
    ] = None,
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
    retry_abstained: Annotated[
        bool,
        typer.Option(help="Buy again the cached labels the teacher abstained on (once fixed)."),
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing skill in --out.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Label DATA with the teacher (cached, costed), train the student, and measure it.

    Labels are cached, so nothing is paid for twice and an interrupted run resumes. With
    --task, the labels are the LLM's recorded answers to the task's calls instead.
    """
    if task is not None:
        given = [flag for flag, value in (("DATA", data), ("--teacher", teacher),
                 ("--gold-column", gold_column), ("--labelled", labelled), ("--cache", cache),
                 ("--prices", prices), ("--machine", machine)) if value is not None]  # fmt: skip
        if given or min_confidence:
            raise ConfigError(
                f"{', '.join(given) or '--min-confidence'} does not apply to --task (the "
                "labels are the recorded answers); leave it out, or drop --task to label DATA "
                "with --teacher"
            )
        _distill_task(task, ledger, tasks, out_dir, student, tuple(sets or ()), held_out, seed,
                      mask_key_env, force, json_out)  # fmt: skip
        return
    if data is None or teacher is None:
        raise ConfigError(
            "pass DATA and --teacher (a teacher labels the texts), or --task T --tasks "
            "tasks.json --ledger URL (the LLM's recorded answers are the labels)"
        )
    from slmstack import registry
    from slmstack.cli.train_generic import parse_assignments
    from slmstack.costs.report import money
    from slmstack.distill import TeacherCache, distill, teacher_id
    from slmstack.skills.base import load
    from slmstack.workflows.metering import Meter

    refuse_same(out_dir, teacher, "the teacher's folder", "the student would replace it")
    if cache is not None and out_dir.resolve() in cache.resolve().parents:
        raise ConfigError(
            f"--cache {cache} lies inside --out {out_dir}, where saving the student would "
            "refuse it after training (a file the skill did not write); pass a path outside "
            "--out, or leave --cache out (the default is beside --out)"
        )
    if not 0.0 <= min_confidence <= 1.0:
        raise ConfigError(f"--min-confidence must be in [0, 1]; got {min_confidence}")
    prepare_out(out_dir, force)
    cls = registry.skills.get(registry.skills.resolve_name(student or "TextClassifier"))
    params = parse_assignments(cls, tuple(sets or ()))
    cls.check_params(params)
    texts, gold = _read(data, text_column, gold_column)
    teacher_skill = load(teacher, allow_pickle=allow_pickle)
    meter = Meter("distill", skills={"teacher": teacher_skill}, backends={},
                  prices=prices, machine=machine)  # fmt: skip
    identity = teacher_id(teacher_skill.skill_name, teacher_skill.get_params(),
                          teacher_skill.provenance_.data_sha256)  # fmt: skip
    cache_path = cache or beside(out_dir, ".teacher-labels.jsonl")
    seed_set = cls.read_training_data(labelled) if labelled is not None else []
    student_skill = cls(**params)
    report = distill(
        teacher_skill, student_skill, texts, cache=TeacherCache(cache_path), identity=identity,
        cost_of=lambda p, s: meter.skill_cost(
            "teacher", p.usage.input_tokens, p.usage.output_tokens, s),
        gold=gold, held_out=held_out, min_confidence=min_confidence, labelled=seed_set,
        retry_abstained=retry_abstained,
    )  # fmt: skip
    student_skill.save(out_dir)
    summary: dict[str, Any] = {"student": str(out_dir), "cache": str(cache_path),
                               "prices": meter.prices.version, **report.to_json()}  # fmt: skip
    if json_out:
        print_json(summary)
        return
    out.print(f"[green]saved[/] {out_dir}  (trained on {report.train_texts} teacher labels)")
    skipped = report.extra.get("held_out_teacher_abstained", 0)
    scored = report.held_out_texts - skipped
    out.print(f"agreement with the teacher on {scored} held-out texts: "
              f"{report.agreement_with_teacher:.4f}"
              + (f" ({skipped} more the teacher abstained on)" if skipped else ""))  # fmt: skip
    if report.student_gold_accuracy is not None:
        out.print(f"gold accuracy: student {report.student_gold_accuracy:.4f}, teacher "
                  f"{report.teacher_gold_accuracy:.4f}")  # fmt: skip
    out.print(
        f"teacher cost: {money(report.teacher_cost_usd)} (this run "
        f"{money(report.teacher_cost_this_run_usd)}, {report.teacher_labels_bought} labels bought; "
        f"prices {meter.prices.version})"
    )


def _distill_task(
    task_id: str,
    ledger: str,
    tasks: Path | None,
    out_dir: Path,
    student: str | None,
    sets: tuple[str, ...],
    held_out: float,
    seed: int,
    mask_key_env: str | None,
    force: bool,
    json_out: bool,
) -> None:
    """``--task``: the student of a discovered task, from its recorded calls."""
    import json

    from slmstack import registry
    from slmstack.cli.train_generic import parse_assignments
    from slmstack.proxy import TrafficStore, key_from_env
    from slmstack.proxy.shadow import read_templates
    from slmstack.proxy.taskdata import read_task, task_data
    from slmstack.proxy.taskdistill import distill_task, student_for

    if tasks is None:
        raise ConfigError(
            "--task needs the tasks' templates: slmstack discover --ledger URL --json > "
            "tasks.json, then pass --tasks tasks.json"
        )
    prepare_out(out_dir, force)
    recorded = read_task(tasks, task_id)
    default = "TextClassifier" if recorded.kind == "classification" else "FieldExtractor"
    cls = registry.skills.get(registry.skills.resolve_name(student or default))
    params = parse_assignments(cls, sets)
    key = key_from_env(mask_key_env) if mask_key_env else None
    url = ledger if "://" in ledger else f"sqlite:///{ledger}"
    store = TrafficStore(url, create=False)
    try:
        rows = store.rows()
    finally:
        store.close()
    data = task_data(rows, recorded, key=key, others=read_templates(tasks))
    skill = student_for(recorded.kind, student, params, data)
    report = distill_task(data, skill, held_out=held_out, seed=seed)
    skill.save(out_dir)
    report_path = beside(out_dir, ".distill-report.json")
    summary: dict[str, Any] = {"student": str(out_dir), "skill": skill.skill_name,
                               "report": str(report_path), **report.to_json()}  # fmt: skip
    report_path.write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    if json_out:
        print_json(summary)
        return
    extra = report.extra
    out.print(f"[green]saved[/] {out_dir}  ({skill.skill_name}, trained on "
              f"{report.train_texts} of {extra['calls']} recorded calls of {task_id})")  # fmt: skip
    dropped = ", ".join(f"{n} {why}" for why, n in extra["dropped"].items() if n)
    if dropped:
        out.print(f"left out: {dropped}", highlight=False)
    rare = extra.get("rare_labels_left_out") or {}
    if rare.get("labels"):
        shown = f"{rare['labels']} labels the LLM gave once ({rare['texts']} texts)"
        out.print(f"{shown} were left out of training: record more traffic to learn them")
    if data.masking == "tokens":
        out.print("[yellow]the calls are masked: trained on the masked text (<KIND> for each "
                  "value); pass --mask-key-env to train on the original text[/]")  # fmt: skip
    out.print(f"agreement with the LLM on {report.held_out_texts} held-out texts: "
              f"{report.agreement_with_teacher:.4f}")  # fmt: skip
    if "fields" in extra:
        out.print(f"field-level F1 against the LLM: {extra['fields']['micro_f1']:.4f}")
    unpriced = f" (+{data.unpriced} unpriced calls)" if data.unpriced else ""
    out.print(f"teacher cost (the recorded calls): ${report.teacher_cost_usd}{unpriced}")
    out.print(f"report: {report_path}", highlight=False)
