"""End-to-end runs of the shipped examples on their own small data (slow: they train)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from example_skills import needs_lora, quick_desk_summarizer, quick_summarizer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.slow


def load_script(example: str):
    path = EXAMPLES / example / "run.py"
    spec = importlib.util.spec_from_file_location(f"example_{example.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def needs_generator():
    pytest.importorskip("llama_cpp", reason="this example generates with SmolLM2 on llama.cpp")


def test_invoices_end_to_end(tmp_path, capsys):
    run = load_script("invoices")
    out = tmp_path / "invoices.csv"
    assert run.main(["--check", "--cache", str(tmp_path), "--out", str(out)]) == 0
    assert "check passed" in capsys.readouterr().out
    rows = {r["file"]: r for r in csv.DictReader(out.open())}
    with (EXAMPLES / "invoices" / "expected.csv").open(newline="", encoding="utf-8") as f:
        expected = {r["file"]: r for r in csv.DictReader(f)}
    assert rows.keys() == expected.keys()
    fields = ("vendor", "address", "date", "total")
    readable = [name for name, want in expected.items() if any(want[k] for k in fields)]
    # Every readable invoice is read right, flagged for review or not: a flag asks a
    # person to confirm, it does not excuse a wrong value.
    for name in readable:
        got = {k: rows[name][k] for k in fields}
        assert got == {k: expected[name][k] for k in fields}, (name, rows[name]["review_reason"])
    assert sum(rows[name]["needs_review"] == "yes" for name in readable) <= 1
    # The unreadable scan is flagged, and what it lacks is left empty, not guessed.
    scan = rows["smudged-scan.txt"]
    assert scan["needs_review"] == "yes"
    assert scan["address"] == scan["date"] == scan["total"] == ""
    assert "missing address, date, total" in scan["review_reason"]


def test_invoices_flags_an_empty_file_instead_of_crashing(tmp_path, capsys):
    # A blank page from the scanner or a failed PDF-to-text gives an empty file: the
    # workflow answers `empty_input` without running the extractor, and the row says so.
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "blank.txt").write_text("\n  \n", encoding="utf-8")
    (folder / "greenleaf-june.txt").write_text(
        (EXAMPLES / "invoices" / "data" / "invoices" / "greenleaf-june.txt").read_text("utf-8"),
        encoding="utf-8",
    )
    out = tmp_path / "invoices.csv"
    run = load_script("invoices")
    assert run.main(["--folder", str(folder), "--cache", str(tmp_path), "--out", str(out)]) == 0
    rows = {r["file"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    blank = rows["blank.txt"]
    assert blank["needs_review"] == "yes"
    assert "empty_input" in blank["review_reason"]
    assert blank["vendor"] == blank["total"] == ""
    assert rows["greenleaf-june.txt"]["total"] == "480.00 GBP"


def test_support_desk_end_to_end(tmp_path, capsys):
    needs_generator()
    needs_lora()
    run = load_script("support-desk")
    # The desk's LoRA summarizer trains for minutes; its spec trained for seconds instead.
    skills = {"summarizer": quick_desk_summarizer()}
    assert run.main(["--check", "--no-trace", "--cache", str(tmp_path)], skills=skills) == 0
    out = capsys.readouterr().out
    assert "check passed" in out
    from slmstack.workflows import Inbox

    inbox = Inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    expected = [
        json.loads(line)
        for line in (EXAMPLES / "support-desk" / "expected.jsonl").read_text().splitlines()
    ]
    assert inbox.count() == sum(e["status"] == "escalated" for e in expected)
    complaint = next(p for p in inbox.list() if p.reason == "complaint")
    assert complaint.intent == "complaint" and complaint.sentiment == "negative"
    assert complaint.summary and complaint.entities


def test_feedback_analysis_end_to_end(tmp_path, capsys):
    needs_generator()
    needs_lora()
    run = load_script("feedback-analysis")
    out_dir = tmp_path / "out"
    skills = {"summarizer": quick_summarizer("feedback-analysis")}  # its LoRA: minutes
    cache = ["--cache", str(tmp_path / "cache")]
    assert run.main(["--check", "--out", str(out_dir), *cache], skills=skills) == 0
    rows = [json.loads(x) for x in (out_dir / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all(r["output"]["data"]["summary"] for r in rows)
    report = json.loads((out_dir / "report.json").read_text())
    assert abs(sum(report["sentiment_share"].values()) - 1) < 0.01  # shares are rounded
    assert report["negative_summary"]
    # a second run resumes: nothing left to do
    assert run.main(["--out", str(out_dir), *cache], skills=skills) == 0
    assert "0 reviews analysed, 12 already done" in capsys.readouterr().out
