"""``slmstack train faq`` and ``slmstack train troubleshoot``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slmstack.cli.common import cli_command, key_values, out, prepare_out, print_json
from slmstack.errors import ConfigError, DataError


def _read_pairs(path: Path, a_column: str, b_column: str) -> list[tuple[str, str]]:
    from slmstack.data.readers import read_records

    pairs = []
    for r in read_records(path):
        for column in (a_column, b_column):
            if column not in r.fields:
                have = ", ".join(repr(c) for c in r.fields)
                raise DataError(
                    f"no column {column!r} (the file has {have}); pass --pair-columns A,B",
                    path=path,
                    row=r.line,
                )
        pairs.append((str(r.fields[a_column]), str(r.fields[b_column])))
    return pairs


def _read_calibration(
    path: Path, text_column: str, label_column: str
) -> list[tuple[str, str | None]]:
    from slmstack.data.readers import read_examples
    from slmstack.evaluation.retrieval import OUT_OF_SCOPE

    examples = read_examples(
        path, text_column=text_column, label_column=label_column, validate=False
    )
    return [(ex.text, None if ex.label in OUT_OF_SCOPE else ex.label) for ex in examples]


@cli_command
def train_faq(
    kb: Annotated[Path, typer.Argument(help="Knowledge base: CSV, TSV, JSONL or Markdown.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to save the answerer to.")],
    pairs: Annotated[
        Path | None, typer.Option(help="Paraphrase pairs (CSV/JSONL) to fine-tune the encoder.")
    ] = None,
    pair_columns: Annotated[
        str, typer.Option(help="The two columns of --pairs.")
    ] = "text,paraphrase",
    calibration: Annotated[
        Path | None,
        typer.Option(
            help="Held-out queries (text,label; label = entry id, empty or 'oos' = out of "
            "scope) to calibrate confidence and choose the threshold. Default: leave-one-out "
            "over the KB's alternate phrasings."
        ),
    ] = None,
    base: Annotated[str, typer.Option(help="Encoder alias, local folder or hub id.")] = "minilm",
    threshold: Annotated[
        float | None, typer.Option(help="Fixed abstention threshold; default: chosen on held-out.")
    ] = None,
    wrong_answer_cost: Annotated[
        float, typer.Option(help="Cost of a wrong answer relative to a wrong abstention.")
    ] = 1.0,
    max_wrong_abstain: Annotated[
        float | None,
        typer.Option(help="Withhold at most this share of right held-out answers (0-1)."),
    ] = None,
    question_column: Annotated[str, typer.Option()] = "question",
    answer_column: Annotated[str, typer.Option()] = "answer",
    id_column: Annotated[str, typer.Option()] = "id",
    text_column: Annotated[str, typer.Option(help="Text column of --calibration.")] = "text",
    label_column: Annotated[str, typer.Option(help="Label column of --calibration.")] = "label",
    epochs: Annotated[int, typer.Option(help="Contrastive fine-tuning epochs.")] = 1,
    learning_rate: Annotated[float, typer.Option("--lr")] = 2e-5,
    batch_size: Annotated[int, typer.Option(help="Pairs per fine-tuning batch.")] = 32,
    precision: Annotated[
        str, typer.Option(help="auto (bf16 where the CPU has it natively), fp32 or bf16.")
    ] = "fp32",
    seed: Annotated[int, typer.Option()] = 0,
    force: Annotated[bool, typer.Option(help="Replace an existing skill in --out.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
) -> None:
    """Build an FAQ answerer from a knowledge base (optionally fine-tuned on paraphrases)."""
    from slmstack.skills.faq import FAQAnswerer

    columns = [c.strip() for c in pair_columns.split(",")]
    if len(columns) != 2:
        raise typer.BadParameter(
            f"--pair-columns needs two names like 'text,paraphrase', got {pair_columns!r}"
        )
    prepare_out(out_dir, force)
    entries = FAQAnswerer.read_training_data(
        kb, id_column=id_column, question_column=question_column, answer_column=answer_column
    )
    pair_list = _read_pairs(pairs, *columns) if pairs is not None else []
    cal = _read_calibration(calibration, text_column, label_column) if calibration else None
    skill = FAQAnswerer(
        base=base,
        threshold=threshold,
        wrong_answer_cost=wrong_answer_cost,
        max_wrong_abstain=max_wrong_abstain,
        epochs=epochs,
        learning_rate=learning_rate,
        train_batch_size=batch_size,
        precision=precision,  # type: ignore[arg-type]
        seed=seed,
    ).fit(entries, pairs=pair_list, calibration=cal)
    skill.save(out_dir)
    summary = {
        "out": str(out_dir),
        "entries": len(skill.entries_),
        "questions": len(skill.index_),
        "fine_tuned_on_pairs": len(pair_list),
        "train_seconds": round(skill.provenance_.seconds, 2),
        "duplicates_dropped": skill.provenance_.duplicates_dropped,
        **skill.metrics_,
    }
    if json_out:
        print_json(summary)
        return
    out.print(
        f"[green]saved[/] {out_dir}  ({summary['entries']} entries, {summary['questions']} "
        f"questions, {summary['train_seconds']} s)"
    )
    m = skill.metrics_
    how = "chosen" if m["threshold_chosen_on_held_out"] else "fixed (--threshold), measured"
    out.print(
        f"threshold {skill.threshold_:.3f} {how} on {m['calibration_source']}: answered "
        f"accuracy {m['held_out_answered_accuracy']:.3f}, abstain rate "
        f"{m['held_out_abstain_rate']:.3f}, ECE {m['held_out_ece']:.3f} (on the queries the "
        "confidence was fitted on: `slmstack eval` on other queries is the unbiased figure)"
    )
    out.print(f"threshold rule: {m['threshold_rule']}")


@cli_command
def train_troubleshoot(
    docs: Annotated[
        list[Path], typer.Argument(help="Folders or files: Markdown, text, JSONL tickets.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to save the skill to.")],
    generator: Annotated[
        str,
        typer.Option(
            help="Generator alias or GGUF file; 'none' answers with the manual's own steps, "
            "quoted (extractive: no generator)."
        ),
    ] = "smollm2",
    runtime: Annotated[str, typer.Option(help="llama_cpp, transformers or openai.")] = "llama_cpp",
    base: Annotated[str, typer.Option(help="Retrieval encoder.")] = "minilm",
    top_k: Annotated[int, typer.Option(help="Passages given to the generator.")] = 3,
    min_similarity: Annotated[
        float, typer.Option(help="Abstain when no passage reaches this cosine.")
    ] = 0.35,
    min_support: Annotated[
        float, typer.Option(help="Drop steps with less of their words in the sources.")
    ] = 0.5,
    max_chars: Annotated[int, typer.Option(help="Chunk size in characters.")] = 800,
    max_tokens: Annotated[int, typer.Option(help="Generated tokens per answer.")] = 256,
    text_field: Annotated[str, typer.Option(help="Text field of JSONL tickets.")] = "text",
    title_field: Annotated[str, typer.Option(help="Title field of JSONL tickets.")] = "title",
    option: Annotated[
        list[str] | None,
        typer.Option("--option", help="A generator option, key=value (base_url=... for openai)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing skill in --out.")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Build a troubleshooter from manuals and past tickets (no training; chunks + index)."""
    from slmstack.retrieval.chunking import read_documents
    from slmstack.skills.troubleshoot import Troubleshooter

    options = key_values(option, "--option")
    extractive = generator.strip().lower() == "none"
    if extractive and option:
        raise ConfigError("--option configures a generator; --generator none has none")
    if runtime == "openai" and not extractive and "base_url" not in options:
        raise ConfigError(
            "--runtime openai needs the server's address: pass --option "
            "base_url=https://HOST/v1 (and --option api_key_env=VAR for its key)"
        )
    prepare_out(out_dir, force)
    documents = read_documents(docs, text_field=text_field, title_field=title_field)
    skill = Troubleshooter(
        base=base,
        generator=None if extractive else generator,
        runtime=runtime,
        top_k=top_k,
        min_similarity=min_similarity,
        min_support=min_support,
        max_chars=max_chars,
        max_tokens=max_tokens,
        generator_options=options or None,
    ).fit(documents)
    skill.save(out_dir)
    summary = {
        "out": str(out_dir),
        "documents": skill.n_documents_,
        "chunks": len(skill.chunks_),
        "seconds": round(skill.provenance_.seconds, 2),
        "generator": None if extractive else generator,
        "runtime": None if extractive else runtime,
    }
    if json_out:
        print_json(summary)
        return
    how = (
        "answers with the manual's steps, quoted"
        if extractive
        else (f"answers with {generator} via {runtime}")
    )
    out.print(
        f"[green]saved[/] {out_dir}  ({summary['documents']} documents, {summary['chunks']} "
        f"chunks, {summary['seconds']} s); {how}"
    )
