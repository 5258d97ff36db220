"""Batch runs: resume after an interruption without redoing or losing rows; the CLI."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from slmstack import DataError
from slmstack.cli.app import app
from slmstack.workflows import (
    CascadeStep,
    EscalateStep,
    Inbox,
    SkillStep,
    TemplateStep,
    Workflow,
    run_batch,
)
from workflow_doubles import KeywordClassifier, Raising

TEXTS = [f"faq question {i}" if i % 3 else f"unclear {i}" for i in range(10)]


def make(skill, inbox):
    return Workflow(
        [
            CascadeStep([SkillStep("intent"), EscalateStep("unsure")], threshold=0.5),
            TemplateStep("answer to {input}"),
        ],
        skills={"intent": skill},
        inbox=inbox,
    )


def rows(path):
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def test_resume_after_interruption_redoes_nothing_and_loses_nothing(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    out = tmp_path / "out.jsonl"
    inbox = Inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    inner = KeywordClassifier({"faq": 0.9})
    flaky = Raising(inner, fail_on=7, exc=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        # chunks of one row: everything before the interrupted row is written
        run_batch(make(flaky, inbox), src, out, chunk_size=1)
    assert [r["row"] for r in rows(out)] == list(range(6))
    escalated_before = inbox.count()
    inner.calls.clear()
    summary = run_batch(make(inner, inbox), src, out)
    assert (summary.already_done, summary.processed, summary.total) == (6, 4, 10)
    assert inner.calls == TEXTS[6:], "only the missing rows run"
    got = rows(out)
    assert [r["row"] for r in got] == list(range(10))
    assert [r["input"] for r in got] == TEXTS
    assert inbox.count() == escalated_before + sum(1 for t in TEXTS[6:] if "unclear" in t)
    assert sum(r["status"] == "escalated" for r in got) == inbox.count()


def test_a_kill_inside_the_first_line_is_redone_and_a_foreign_file_is_kept(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "out.jsonl"
    inbox = Inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    run_batch(make(KeywordClassifier({"faq": 0.9}), inbox), src, out)
    first = out.read_text().splitlines()[0]
    out.write_text(first[:12])  # a crash while writing row 0: no complete line yet
    summary = run_batch(make(KeywordClassifier({"faq": 0.9}), inbox), src, out)
    assert (summary.already_done, summary.processed) == (0, 10)
    assert [r["row"] for r in rows(out)] == list(range(10))
    notes = tmp_path / "notes.jsonl"  # not a result row at all: refused, left as it was
    notes.write_text('{"note": "mine')
    with pytest.raises(DataError, match="not a result row"):
        run_batch(make(KeywordClassifier({"faq": 0.9}), inbox), src, notes)
    assert notes.read_text() == '{"note": "mine'


def test_half_written_last_line_is_redone_and_packets_not_duplicated(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "out.jsonl"
    inbox = Inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    run_batch(make(KeywordClassifier({"faq": 0.9}), inbox), src, out)
    full = out.read_text().splitlines()
    assert inbox.count() == 4
    # simulate a crash while writing row 3 (an escalated row): keep rows 0-2 and half of 3
    out.write_text("\n".join(full[:3]) + "\n" + full[3][:25])
    summary = run_batch(make(KeywordClassifier({"faq": 0.9}), inbox), src, out)
    assert (summary.already_done, summary.processed) == (3, 7)
    assert [r["row"] for r in rows(out)] == list(range(10))
    assert inbox.count() == 4, "row 3 escalated before the crash; its packet is not filed twice"
    # --restart is a new run: the same texts file packets of their own (4 more), and
    # resuming that run files none again
    run_batch(make(KeywordClassifier({"faq": 0.9}), inbox), src, out, restart=True)
    assert inbox.count() == 8
    out.write_text("\n".join(out.read_text().splitlines()[:3]) + "\n")
    run_batch(make(KeywordClassifier({"faq": 0.9}), inbox), src, out)
    assert inbox.count() == 8


def test_output_of_another_input_is_refused(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"row": 0, "input": "something else"}) + "\n")
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    wf = Workflow([TemplateStep("x")], skills={})
    with pytest.raises(DataError, match="belongs to a different input file"):
        run_batch(wf, src, out)
    summary = run_batch(wf, src, out, restart=True)
    assert summary.processed == 1 and rows(out)[0]["input"] == "hello"


def test_bad_input_lines_name_the_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "ok"}\n{"txt": "bad"}\n')
    with pytest.raises(
        DataError, match=r"in.jsonl:2: each line must be a JSON string or an object"
    ):
        run_batch(Workflow([TemplateStep("x")], skills={}), src, tmp_path / "o.jsonl")


WF = """\
skills:
  lang: {kind: slmstack.LanguageDetector.v1, train: lang.csv}
inbox: sqlite:///inbox.db
steps:
  - route:
      skill: lang
      branches: {en: {template: "EN: {input}"}}
      default: {escalate: {reason: language not served, message: "We will reply soon."}}
"""


@pytest.mark.slow
def test_cli_run_trace_batch_and_inbox(tmp_path, monkeypatch):
    (tmp_path / "lang.csv").write_text(
        "text,label\nwhere is my parcel,en\nthe card does not work,en\n"
        "wo ist mein Paket,de\ndie Karte funktioniert nicht,de\n"
    )
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF)
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(wf), "where is my parcel"])
    assert res.exit_code == 0, res.output
    assert "en: EN: where is my parcel" in res.output
    res = runner.invoke(app, ["run", str(wf), "wo ist mein Paket bitte", "--trace"])
    assert res.exit_code == 0, res.output
    assert "escalated to human (packet #1)" in res.output and "language not served" in res.output
    src = tmp_path / "in.txt"
    src.write_text("where is my parcel\nwo ist meine Karte\n")
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["run", str(wf), "--input", str(src), "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert "2 rows run, 0 already done, 1 escalated" in res.output
    res = runner.invoke(app, ["run", str(wf), "--input", str(src), "--output", str(out)])
    assert "0 rows run, 2 already done" in res.output
    db = f"sqlite:///{tmp_path / 'inbox.db'}"
    res = runner.invoke(app, ["inbox", "list", "--db", db, "--json"])
    listed = json.loads(res.output)
    assert [p["id"] for p in listed] == [1, 2] and listed[0]["reason"] == "language not served"
    assert runner.invoke(app, ["inbox", "claim", "1", "--as", "ana", "--db", db]).exit_code == 0
    res = runner.invoke(app, ["inbox", "claim", "1", "--as", "bo", "--db", db])
    assert res.exit_code == 2 and "packet 1 is claimed by 'ana'" in res.output
    res = runner.invoke(app, ["inbox", "resolve", "1", "--note", "replied in German", "--db", db])
    assert res.exit_code == 2 and "--as NAME" in res.output  # ana's claim is not overrun
    res = runner.invoke(app, ["inbox", "resolve", "1", "--note", "replied in German", "--as",
                              "ana", "--db", db])  # fmt: skip
    assert res.exit_code == 0
    res = runner.invoke(app, ["inbox", "show", "1", "--db", db, "--json"])
    shown = json.loads(res.output)
    assert shown["status"] == "resolved" and shown["resolution"] == "replied in German"
    assert shown["trace"][0]["kind"] == "route"
    res = runner.invoke(app, ["inbox", "show", "9", "--db", db])
    assert res.exit_code == 2 and "no packet with id 9" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent(WF).replace("skill: lang", "skill: lng"))
    res = runner.invoke(app, ["run", str(bad), "x"])
    assert res.exit_code == 2 and "unknown skill 'lng' (did you mean 'lang'?)" in res.output


def test_cli_run_fails_when_its_ledger_rows_cannot_be_written(tmp_path):
    # The command closes its workflow: the ledger is flushed before it exits, and a
    # database that refuses the rows fails the command instead of a log line at exit.
    import sqlite3

    from slmstack.costs import Ledger

    wf = tmp_path / "wf.yaml"
    wf.write_text('ledger: sqlite:///ledger.db\nsteps:\n  - template: "hello {input}"\n')
    src = tmp_path / "in.txt"
    src.write_text("one\ntwo\n")
    Ledger(f"sqlite:///{tmp_path / 'ledger.db'}").close()
    with sqlite3.connect(tmp_path / "ledger.db") as con:
        con.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON slmstack_ledger "
            "BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END"
        )
    runner = CliRunner()
    for args in (["hi"], ["--input", str(src), "--output", str(tmp_path / "out.jsonl")]):
        res = runner.invoke(app, ["run", str(wf), *args])
        assert res.exit_code == 2, res.output
        assert "cannot write" in res.output and "disk quota exceeded" in res.output


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_a_second_writer_of_one_output_is_refused_and_adds_no_rows(tmp_path):
    import fcntl

    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "out.jsonl"
    wf = make(KeywordClassifier({"faq": 0.9}), Inbox(f"sqlite:///{tmp_path / 'inbox.db'}"))
    run_batch(wf, src, out)
    before = out.read_bytes()
    yaml_wf = tmp_path / "wf.yaml"
    yaml_wf.write_text('steps:\n  - template: "ok: {input}"\n')
    with out.open("a") as first:  # another run holds the file
        fcntl.flock(first.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DataError, match=r"out\.jsonl: locked: another process"):
            run_batch(wf, src, out, restart=True)  # not even --restart touches it
        res = CliRunner().invoke(
            app, ["run", str(yaml_wf), "--input", str(src), "--output", str(out)]
        )
        assert res.exit_code == 2 and res.stderr.startswith("error: ")
        assert "locked" in res.stderr and "pass another --output" in res.stderr
    assert out.read_bytes() == before
    assert sorted(r["row"] for r in rows(out)) == list(range(len(TEXTS)))
    # Once the first writer is gone, the file is free again.
    res = CliRunner().invoke(app, ["run", str(yaml_wf), "--input", str(src), "--output", str(out)])
    assert res.exit_code == 0 and "0 rows run, 10 already done" in res.stdout


def test_a_file_that_holds_no_results_is_never_cut_or_overwritten(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    wf = Workflow([TemplateStep("x")], skills={})
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, one line without a newline")
    with pytest.raises(DataError, match="is not a result row.*another --output"):
        run_batch(wf, src, notes)
    assert notes.read_text() == "my notes, one line without a newline"
    with pytest.raises(DataError, match="--output is the input file"):
        run_batch(wf, src, src, restart=True)
    assert src.read_text() == "hello\n"


def test_a_table_without_the_text_column_names_the_option_that_picks_another(tmp_path):
    from slmstack.workflows.batch import read_inputs

    (tmp_path / "in.csv").write_text("body\nhello\n")
    with pytest.raises(
        DataError, match=r"no column 'text' \(the file has 'body'\); pass --text-field"
    ):
        read_inputs(tmp_path / "in.csv")
    assert read_inputs(tmp_path / "in.csv", "body") == ["hello"]


def test_inputs_holding_a_unicode_line_separator_are_one_row_each(tmp_path):
    # json.dumps(ensure_ascii=False) writes U+2028 raw inside a string; str.splitlines()
    # would cut that record in two and refuse both halves as invalid JSON.
    texts = ["faq question\u2028second line", "unclear one\x85two"]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts))
    txt = tmp_path / "in.txt"
    txt.write_text("\n".join(texts) + "\n")
    inbox = Inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    for path in (src, txt):
        out = tmp_path / f"{path.suffix[1:]}.out.jsonl"
        summary = run_batch(make(KeywordClassifier({"faq": 0.9}), inbox), path, out)
        assert summary.total == 2
        assert [r["input"] for r in rows(out)] == texts


def test_a_resume_with_a_changed_workflow_file_is_refused(tmp_path):
    from slmstack.workflows import load_workflow

    src = tmp_path / "in.txt"
    src.write_text("one\ntwo\n")
    wf = tmp_path / "wf.yaml"
    spec = textwrap.dedent(
        """\
        name: t
        backends:
          llm: {model: gpt-4o-mini, runtime: openai, options: {base_url: "http://a:1/v1", api_key_env: null}}
        steps:
          - template: "answer: {input}"
        """
    )
    wf.write_text(spec)
    out = tmp_path / "out.jsonl"
    run_batch(load_workflow(wf), src, out)
    src.write_text("one\ntwo\nthree\n")
    wf.write_text(spec.replace("answer:", "reply:"))
    with pytest.raises(DataError, match="changed since this output was started.*--restart"):
        run_batch(load_workflow(wf), src, out)
    assert len(rows(out)) == 2
    # Where the LLM is reached, comments and layout decide no result: resumed.
    moved = spec.replace("http://a:1/v1", "http://b:2/v1").replace("name: t", "name: t  # x")
    wf.write_text(moved)
    assert run_batch(load_workflow(wf), src, out).processed == 1
    wf.write_text(spec.replace("answer:", "reply:"))
    summary = run_batch(load_workflow(wf), src, out, restart=True)
    assert summary.processed == 3 and rows(out)[0]["answer"] == "reply: one"
