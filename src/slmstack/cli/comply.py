"""``slmstack comply DOC... --pack PACK --out DIR`` and ``slmstack train comply DATA --out DIR``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from slmstack.cli.common import (
    check_html_target,
    cli_command,
    err,
    out,
    prepare_out,
    print_json,
)
from slmstack.data.utf8 import decode_utf8
from slmstack.errors import ConfigError, DataError


@cli_command
def train_comply(
    data: Annotated[Path, typer.Argument(help="ContractNLI-format JSON (documents, labels).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to save the checker to.")],
    pack: Annotated[
        str, typer.Option(help="Default pack of the checker: a shipped name or a YAML file.")
    ] = "nda",
    base: Annotated[
        str, typer.Option(help="Sentence encoder (alias, folder or hub id).")
    ] = "minilm",
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="Another parameter, key=value (c=0.5).")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    allow_pickle: Annotated[bool, typer.Option(help="Accept pickled base weights.")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing skill in --out.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
) -> None:
    """Train a compliance checker (evidence + NLI) from annotated contracts."""
    from slmstack.cli.train_generic import parse_assignments
    from slmstack.compliance.checker import ComplianceChecker
    from slmstack.compliance.rules import load_pack

    params: dict[str, Any] = {
        "pack": pack,
        "base": base,
        "seed": seed,
        "allow_pickle": allow_pickle,
        **parse_assignments(
            ComplianceChecker, tuple(sets or ()), own=("pack", "base", "seed", "allow_pickle")
        ),
    }
    ComplianceChecker.check_params(params)
    load_pack(pack)  # a bad pack is reported before training, not after
    prepare_out(out_dir, force)
    docs = ComplianceChecker.read_training_data(data)
    skill = ComplianceChecker(**params).fit(docs)
    skill.save(out_dir)
    summary: dict[str, Any] = {"out": str(out_dir), "documents": len(docs),
               "train_seconds": round(skill.provenance_.seconds, 2),
               **{k: round(v, 4) for k, v in skill.metrics_.items()}}  # fmt: skip
    if json_out:
        print_json(summary)
        return
    out.print(f"[green]saved[/] {out_dir}  ({len(docs)} documents, {summary['train_seconds']} s)")
    out.print(
        f"validation ({int(summary['n_val_docs'])} documents): accuracy "
        f"{summary['val_accuracy']:.3f}  F1 entailed {summary['val_f1_entailed']:.3f}  "
        f"F1 contradicted {summary.get('val_f1_contradicted', float('nan')):.3f}  review below "
        f"{skill.review_threshold_:.2f}"
    )


def _check_report_json(path: Path) -> None:
    """Refuse to replace a ``report.json`` that an earlier ``comply`` did not write."""
    if not path.exists():
        return
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = None
    if not (isinstance(earlier, dict) and {"pack", "documents"} <= set(earlier)):
        raise DataError(
            "exists and is not a compliance report, so --out will not overwrite it; pass "
            "another folder for the reports",
            path=path,
        )


# Contracts often come as PDF or Word files; "re-save as UTF-8" would make garbage of them.
_NOT_TEXT = (
    (b"%PDF-", "a PDF", "`pdftotext -layout FILE.pdf FILE.txt`"),
    (b"PK\x03\x04", "a zipped office file (.docx, .odt)", "save it as plain text (.txt)"),
    (b"\xd0\xcf\x11\xe0", "an old Word file (.doc)", "save it as plain text (.txt)"),
    (b"{\\rtf", "an RTF file", "save it as plain text (.txt)"),
)


def _read_document(path: Path) -> str:
    if not path.exists():
        raise ConfigError(f"document {path} does not exist; pass text files (.txt, .md)")
    if path.is_dir():
        raise ConfigError(f"document {path} is a folder; pass the text files inside it")
    raw = path.read_bytes()
    for magic, kind, fix in _NOT_TEXT:
        if raw.startswith(magic):
            raise DataError(f"is {kind}, not text; convert it to text first: {fix}", path=path)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError("is UTF-16 text; re-save it as UTF-8 (iconv -f utf-16 -t utf-8 IN > OUT)",
                        path=path)  # fmt: skip
    if b"\x00" in raw:
        raise DataError("holds NUL bytes: a binary file, or UTF-16 text without a byte-order "
                        "mark; pass a text file saved as UTF-8", path=path)  # fmt: skip
    # as `predict` reads it: CRLF kept (evidence offsets), BOM dropped
    text = decode_utf8(path, raw)
    if not text.strip():
        raise DataError("is empty; there is nothing to check", path=path)
    return text


@cli_command
def comply(
    documents: Annotated[list[Path], typer.Argument(help="Text files to check (.txt, .md).")],
    pack: Annotated[
        str, typer.Option(help="Rule pack: a YAML file, or nda, gdpr-art28, payment-terms.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for report.json and report.html.")],
    model: Annotated[
        Path | None,
        typer.Option(help="A ComplianceChecker folder (`slmstack train comply`), for text rules."),
    ] = None,
    fields_model: Annotated[
        Path | None,
        typer.Option(
            "--fields", help="A FieldExtractor folder (`slmstack train fields`), for field rules."
        ),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            help="Exit 1 when a document's worst flag is this or worse "
            "(violated, missing, needs_review)."
        ),
    ] = None,
    allow_pickle: Annotated[bool, typer.Option(help="Accept pickled base weights.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check documents against a rule pack; write a JSON and an HTML report with evidence."""
    from slmstack.compliance.checker import ComplianceChecker
    from slmstack.compliance.fields import check_fields, combine, field_record
    from slmstack.compliance.report import render_html, result_record
    from slmstack.compliance.rules import load_pack
    from slmstack.skills.base import load

    order = ("violated", "missing", "needs_review")
    if fail_on is not None and fail_on not in order:
        raise ConfigError(f"--fail-on must be one of {', '.join(order)}; got {fail_on!r}")
    rules = load_pack(pack)
    if rules.nli_rules and model is None:
        raise ConfigError(
            f"pack {rules.name!r} has {len(rules.nli_rules)} text rules, which need a trained "
            "checker: pass --model DIR (train one with `slmstack train comply DATA.json --out DIR`)"
        )
    if rules.field_rules and fields_model is None:
        raise ConfigError(
            f"pack {rules.name!r} has {len(rules.field_rules)} field rules, which read an "
            "extractor's fields: pass --fields DIR (a FieldExtractor from `slmstack train fields`)"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; pass a folder for the reports")
    check_html_target(out_dir / "report.html", "--out")  # not inside a skill, not a page of theirs
    _check_report_json(out_dir / "report.json")
    texts = [_read_document(p) for p in documents]
    text_preds: list[Any] = [None] * len(texts)
    if rules.nli_rules and model is not None:
        checker = load(model, allow_pickle=allow_pickle)
        if not isinstance(checker, ComplianceChecker):
            raise ConfigError(
                f"--model {model} is a {type(checker).__name__}, not a ComplianceChecker; "
                "train one with `slmstack train comply`"
            )
        text_preds = checker.check(texts, rules)
    records: list[dict[str, Any]] = [{} for _ in texts]
    if rules.field_rules and fields_model is not None:
        extractor = load(fields_model, allow_pickle=allow_pickle)
        _check_extractor(extractor, fields_model, rules)
        records = [field_record(p) for p in extractor.predict(texts)]
    results = [combine(rules, tp, check_fields(rules, rec))
               for tp, rec in zip(text_preds, records, strict=True)]  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    triples = [(str(p), t, r.to_dict()) for p, t, r in zip(documents, texts, results, strict=True)]
    records = [result_record(*x) for x in triples]
    report = {"pack": rules.name, "documents": records}
    (out_dir / "report.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    page = render_html(triples, pack=rules.name)
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    for note in dict.fromkeys(w for r in results for w in r.warnings):  # once, not per document
        err.print(Text("warning: ", style="yellow") + Text(note), soft_wrap=True)
    if json_out:
        print_json(report)
    else:
        table = Table("document", "flag", "violated", "missing", "review", "ok")
        for rec in records:
            c = rec["counts"]
            table.add_row(rec["document"], rec["flag"], *(str(c.get(k, 0)) for k in
                          ("violated", "missing", "needs_review", "ok")))  # fmt: skip
        out.print(table)
        out.print(f"[green]wrote[/] {out_dir / 'report.json'} and {out_dir / 'report.html'}")
    if fail_on is not None:
        worst = order[: order.index(fail_on) + 1]
        if any(r.label in worst for r in results):
            raise typer.Exit(1)


def _check_extractor(extractor: Any, folder: Path, rules: Any) -> None:
    """--fields must be a FieldExtractor that extracts every field the pack's rules read."""
    from slmstack.skills.fields import FieldExtractor

    if not isinstance(extractor, FieldExtractor):
        raise ConfigError(
            f"--fields {folder} is a {type(extractor).__name__}, not a FieldExtractor; train "
            "one with `slmstack train fields`"
        )
    have = {spec.name for spec in extractor.specs_}
    for rule in rules.field_rules:
        wanted = [*rule.fields, *([rule.total] if rule.total else [])]
        missing = [f for f in wanted if f not in have]
        if missing:
            raise ConfigError(
                f"rule {rule.id!r} of pack {rules.name!r} reads {', '.join(missing)}, which the "
                f"extractor in {folder} does not extract (it has {', '.join(sorted(have))}); "
                "train it with those fields in its schema, or use a pack that fits it"
            )
