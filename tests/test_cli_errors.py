"""The CLI's one error handler: `error: ...` on stderr, exit 2, no traceback unless --debug."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest
import typer
from typer.testing import CliRunner

from slmstack.cli.app import _Root, app

runner = CliRunner()

ESCALATE = """\
inbox: sqlite:///inbox.db
steps:
  - escalate: {reason: needs a person}
"""


def one_error_line(result, *needles):
    """Exit 2, a single `error:` line on stderr naming every needle, and no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), result.exception  # handled, not raised
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"slmstack {version('slmstack')}"


def test_inbox_db_that_is_not_a_database(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_text("these are my notes, not a database\n" * 100)
    line = one_error_line(
        runner.invoke(app, ["inbox", "list", "--db", str(bad)]), str(bad), "not an inbox"
    )
    assert "`inbox:` entry" in line  # the fix
    assert bad.read_text().startswith("these are my notes")  # left alone


def test_workflow_with_a_typo(tmp_path):
    wf = tmp_path / "wf.yaml"
    wf.write_text("steps:\n  - templat: hello\n")
    one_error_line(
        runner.invoke(app, ["run", str(wf), "hi"]),
        f"{wf}:2",
        "unknown step kind 'templat' (did you mean 'template'?)",
    )


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("wf.yaml", ["run", "{file}", "hi"]),
        ("pack.yaml", ["comply", "{tmp}/doc.txt", "--pack", "{file}", "--out", "{tmp}/out"]),
        ("serve.yaml", ["serve", "{file}"]),
        ("in.txt", ["run", "{tmp}/ok.yaml", "--input", "{file}", "--output", "{tmp}/o.jsonl"]),
    ],
)
def test_a_file_that_is_not_utf8_is_named_with_its_line_and_the_fix(tmp_path, name, args):
    (tmp_path / "ok.yaml").write_text("steps:\n  - template: hello\n")
    (tmp_path / "doc.txt").write_text("A contract.\n")
    bad = tmp_path / name
    bad.write_bytes(b"# caf\xe9 latin-1\nsteps: []\n")
    args = [a.format(tmp=tmp_path, file=bad) for a in args]
    one_error_line(runner.invoke(app, args), f"{bad}:1", "not UTF-8", "iconv")


@pytest.mark.parametrize(
    "args",
    [
        ["run", "{tmp}/no-such.yaml", "hi"],
        ["inbox", "list", "--workflow", "{tmp}/no-such.yaml"],
        ["inbox", "list", "--db", "{tmp}/no-such-folder/inbox.db"],
        ["inbox", "show", "1", "--db", "sqlite:///{tmp}/no-such-folder/inbox.db"],
    ],
)
def test_unknown_path(tmp_path, args):
    args = [a.format(tmp=tmp_path) for a in args]
    one_error_line(runner.invoke(app, args), "no-such")
    assert not (tmp_path / "no-such-folder").exists()  # nothing created on the way


def test_os_errors_are_one_line(tmp_path):
    wf = tmp_path / "wf.yaml"
    wf.write_text(ESCALATE)
    texts = tmp_path / "in.txt"
    texts.write_text("one\ntwo\n")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-folder").mkdir()
    for output, needle in [
        ("a-file/out.jsonl", "is a file, not a folder"),
        ("a-folder", "is a folder"),
    ]:
        args = ["run", str(wf), "--input", str(texts), "--output", str(tmp_path / output)]
        one_error_line(runner.invoke(app, args), needle)


def test_debug_shows_the_traceback_instead(tmp_path):
    missing = str(tmp_path / "no-such.yaml")
    result = runner.invoke(app, ["--debug", "run", missing, "hi"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr


def _root_app(error: Exception) -> typer.Typer:
    """A root like slmstack's with one command that raises ``error``."""
    bug = typer.Typer(cls=_Root)

    @bug.callback()
    def root(debug: bool = typer.Option(False, "--debug")) -> None:
        pass

    @bug.command()
    def boom() -> None:
        raise error

    return bug


@pytest.mark.parametrize(
    ("error", "code", "needle"),
    [
        (FileExistsError(17, "File exists", "out"), 2, "error: out: File exists"),
        (NotADirectoryError(20, "Not a directory", "x/y"), 2, "error: x/y: Not a directory"),
        (RuntimeError("boom"), 1, "error: unexpected RuntimeError: boom. This is a bug"),
    ],
)
def test_errors_outside_commands_wrappers(error, code, needle):
    result = runner.invoke(_root_app(error), ["boom"])
    assert result.exit_code == code and isinstance(result.exception, SystemExit)
    assert result.stderr.startswith(needle) and "Traceback" not in result.output
    debug = runner.invoke(_root_app(error), ["--debug", "boom"])
    assert debug.exit_code == code and "Traceback" in debug.stderr


def test_real_process_prints_no_traceback(tmp_path):
    bad = tmp_path / "inbox.db"
    bad.write_bytes(b"\x00garbage" * 50)
    main = "from slmstack.cli.app import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", main, "inbox", "list", "--db", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_serve_checks_its_workflows_and_options_before_any_model_loads(tmp_path):
    (tmp_path / "wf.yaml").write_text("steps:\n  - skill: intnet\n")
    config = tmp_path / "serve.yaml"
    config.write_text("workflows:\n  desk: wf.yaml\n")
    one_error_line(
        runner.invoke(app, ["serve", str(config)]),
        "wf.yaml:2: steps[0].skill: unknown skill 'intnet'",
    )
    (tmp_path / "wf.yaml").write_text("steps:\n  - template: hello\n")
    one_error_line(
        runner.invoke(app, ["serve", str(config), "--log-level", "loud"]),
        "--log-level must be one of critical, error, warning, info, debug, trace",
    )
    bad_port = runner.invoke(app, ["serve", str(config), "--port", "99999"])
    assert bad_port.exit_code == 2 and "65535" in bad_port.output
    one_error_line(runner.invoke(app, ["serve", str(tmp_path)]), "is a folder")


def test_reports_never_overwrite_a_file_that_is_no_report_and_costs_are_checked(tmp_path):
    wf = tmp_path / "wf.yaml"
    wf.write_text("steps:\n  - template: hello\n")
    one_error_line(
        runner.invoke(
            app, ["cost", "report", "--ledger", str(tmp_path / "l.db"), "--html", str(wf)]
        ),
        "is not an HTML report",
    )
    one_error_line(
        runner.invoke(
            app,
            ["tune", "cascade", str(wf), "--data", str(wf), "--target", "0.9", "--html", str(wf)],
        ),
        "is not an HTML report",
    )
    assert wf.read_text() == "steps:\n  - template: hello\n"
    for value, needle in (("abc", "a number of dollars"), ("-1", "a number of dollars, 0 or more")):
        one_error_line(
            runner.invoke(
                app,
                [
                    "tune",
                    "cascade",
                    str(wf),
                    "--data",
                    str(wf),
                    "--target",
                    "0.9",
                    "--human-cost",
                    value,
                ],
            ),
            f"--human-cost must be {needle}",
        )
    report = tmp_path / "old.html"
    report.write_text("<!DOCTYPE html><html></html>")
    from slmstack.cli.common import check_html_target

    check_html_target(report)  # an earlier report may be replaced


def test_lora_and_export_refuse_an_out_they_would_destroy(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "p", "response": "r"}\n')
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    one_error_line(
        runner.invoke(app, ["train", "lora", str(pairs), "--out", str(notes)]),
        "not a saved adapter",
    )
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "slmstack_adapter.json").write_text("{}")
    one_error_line(
        runner.invoke(app, ["train", "lora", str(pairs), "--out", str(adapter)]),
        "already holds an adapter. Pass --force",
    )
    assert (notes / "todo.txt").read_text() == "mine"
    skill = tmp_path / "skill"
    skill.mkdir()
    (skill / "config.json").write_text('{"skill": "slmstack.TextClassifier.v1", "files": {}}')
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"skill": "slmstack.TextClassifier.v1", "files": {}}')
    export = ["export", str(skill), "--validation", str(pairs), "--out"]
    one_error_line(runner.invoke(app, [*export, str(other)]), "Pass --overwrite to replace it")
    one_error_line(  # the source itself: the only copy that can be resumed
        runner.invoke(app, [*export, str(skill), "--overwrite"]), "is the skill being exported"
    )
    (other / "NOTES.md").write_text("mine")  # a user's own file in a saved skill
    one_error_line(
        runner.invoke(app, [*export, str(other), "--overwrite"]),
        "also holds files it did not write (NOTES.md)",
    )
    assert (other / "NOTES.md").read_text() == "mine"
    one_error_line(
        runner.invoke(app, [*export, str(other / "onnx")]), "lies inside the saved skill"
    )
    one_error_line(
        runner.invoke(app, ["eval", str(other), str(pairs), "--html", str(other / "r.html")]),
        "lies inside the saved skill",
    )


def test_a_bad_proxy_option_is_named_by_its_flag():
    one_error_line(
        runner.invoke(app, ["proxy", "--upstream", "api.openai.com"]),
        "--upstream: the upstream must be an http(s) URL",
    )


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--output", "{tmp}/out.jsonl"], "--output"),
        (["--restart"], "--restart"),
        (["--text-field", "body"], "--text-field"),
    ],
)
def test_run_refuses_file_options_given_with_texts(tmp_path, extra, flag):
    # They only apply to --input: taken with texts they were ignored, and no file written.
    wf = tmp_path / "wf.yaml"
    wf.write_text("steps:\n  - template: hello\n")
    args = ["run", str(wf), "hi", *(a.format(tmp=tmp_path) for a in extra)]
    one_error_line(runner.invoke(app, args), flag, "--input")
    assert not (tmp_path / "out.jsonl").exists()


def test_proxy_refuses_a_bad_port_or_log_level_before_it_starts(tmp_path, monkeypatch):
    import socket

    import uvicorn

    def started(*args, **kwargs):
        raise AssertionError("the proxy started listening")

    monkeypatch.setattr(uvicorn, "run", started)
    base = ["proxy", "--upstream", "http://127.0.0.1:9/v1", "--ledger", str(tmp_path / "p.db")]
    # 99999 is no port: uvicorn said it was "running on :99999" and listened elsewhere
    result = runner.invoke(app, [*base, "--port", "99999"])
    assert result.exit_code == 2 and "--port" in result.output
    one_error_line(runner.invoke(app, [*base, "--log-level", "loud"]), "--log-level", "'loud'")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        one_error_line(runner.invoke(app, [*base, "--port", port]), f"port {port}", "in use")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--request-id", "r1"], "--request-id"),  # was ignored: stdin read instead
        (["masked text", "--ledger", "p.db", "--request-id", "r1"], "TEXT"),
    ],
)
def test_proxy_unmask_refuses_options_it_would_ignore(tmp_path, monkeypatch, args, needle):
    from slmstack.proxy import generate_key

    monkeypatch.setenv("SLMSTACK_MASK_KEY", generate_key())
    monkeypatch.chdir(tmp_path)
    one_error_line(runner.invoke(app, ["proxy", "unmask", *args], input=""), needle)


def test_inbox_list_refuses_status_with_all(tmp_path):
    from slmstack.workflows import Inbox

    db = f"sqlite:///{tmp_path / 'inbox.db'}"
    Inbox(db).close()
    one_error_line(
        runner.invoke(app, ["inbox", "list", "--db", db, "--status", "claimed", "--all"]),
        "--all lists every status",
    )
    assert runner.invoke(app, ["inbox", "list", "--db", db, "--all"]).exit_code == 0


@pytest.mark.parametrize("value", ["stop=[", "api_key=@secret", "api_key=`x"])
def test_an_option_value_that_is_not_yaml_is_named_with_the_fix(tmp_path, value):
    # Each value is read as YAML; one YAML cannot read was reported as a bug in slmstack.
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "router.md").write_text("# Router\nRestart it.\n")
    args = ["train", "troubleshoot", str(docs), "--out", str(tmp_path / "ts")]
    line = one_error_line(
        runner.invoke(app, [*args, "--generator", "smollm2", "--option", value]),
        f"--option {value!r}",
        "quote the value",
    )
    assert "\n" not in line
    assert not (tmp_path / "ts").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "{file}"],
        ["train", "fields", "{tmp}/docs.jsonl", "--schema", "{file}", "--out", "{tmp}/fx"],
    ],
)
def test_a_yaml_mistake_is_named_with_its_file_and_line(tmp_path, args):
    # It was YAML's own report over four lines: `in "<unicode string>", line 3, column 1`.
    (tmp_path / "docs.jsonl").write_text('{"text": "Total: 10", "values": {"total": "10"}}\n')
    bad = tmp_path / "bad.yaml"
    bad.write_text("# a config\nskills: [\n")
    args = [a.format(tmp=tmp_path, file=bad) for a in args]
    line = one_error_line(runner.invoke(app, args), f"{bad}:3: not valid YAML: ")
    assert "unicode string" not in line


def test_a_schema_folder_is_called_a_folder(tmp_path):
    (tmp_path / "docs.jsonl").write_text('{"text": "Total: 10", "values": {"total": "10"}}\n')
    args = ["train", "fields", str(tmp_path / "docs.jsonl"), "--out", str(tmp_path / "fx")]
    one_error_line(  # it was said not to exist
        runner.invoke(app, [*args, "--schema", str(tmp_path)]), "is a folder, not a file"
    )
