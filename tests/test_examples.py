"""End-to-end runs of the shipped examples on their own small data (slow: they train)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

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
    rows = list(csv.DictReader(out.open()))
    flagged = {r["file"] for r in rows if r["needs_review"] == "yes"}
    assert "smudged-scan.txt" in flagged
    assert len(flagged) <= 2
    assert "check passed" in capsys.readouterr().out


def test_support_desk_end_to_end(tmp_path, capsys):
    needs_generator()
    run = load_script("support-desk")
    assert run.main(["--check", "--no-trace", "--cache", str(tmp_path)]) == 0
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
    run = load_script("feedback-analysis")
    out_dir = tmp_path / "out"
    assert run.main(["--check", "--out", str(out_dir), "--cache", str(tmp_path / "cache")]) == 0
    rows = [json.loads(x) for x in (out_dir / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all(r["output"]["data"]["summary"] for r in rows)
    report = json.loads((out_dir / "report.json").read_text())
    assert abs(sum(report["sentiment_share"].values()) - 1) < 0.01  # shares are rounded
    assert report["negative_summary"]
    # a second run resumes: nothing left to do
    assert run.main(["--out", str(out_dir), "--cache", str(tmp_path / "cache")]) == 0
    assert "0 reviews analysed, 12 already done" in capsys.readouterr().out
