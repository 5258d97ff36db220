"""The escalation inbox: open → claimed → resolved, idempotent keys, clear errors."""

from __future__ import annotations

import json
import threading

import pytest

from databases import db_url  # noqa: F401  (SQLite and PostgreSQL)
from slmstack import ConfigError
from slmstack.errors import DataError, InboxError, SlmstackError
from slmstack.workflows import Inbox, Packet


def packet(**kw):
    base = {"workflow": "desk", "text": "my order is late", "reason": "complaint", "why": "x"}
    return Packet(**(base | kw))


@pytest.fixture
def inbox(db_url):  # noqa: F811
    return Inbox(db_url)


def test_lifecycle(inbox):
    pid = inbox.add(packet(entities=({"label": "ORDER", "text": "ORD-1"},), intent="complaint"))
    p = inbox.get(pid)
    assert (p.status, p.intent, p.entities) == (
        "open",
        "complaint",
        ({"label": "ORDER", "text": "ORD-1"},),
    )
    assert p.created_at is not None and p.created_at.tzinfo is not None
    assert inbox.claim(pid, "ana").claimed_by == "ana"
    with pytest.raises(ConfigError, match="packet 1 is claimed by 'ana'; only open packets"):
        inbox.claim(pid, "bo")
    with pytest.raises(InboxError, match="claimed by 'ana', and you did not say who"):
        inbox.resolve(pid, "refunded")  # anonymous: a claimed packet is its claimant's
    done = inbox.resolve(pid, "refunded", who="ana")
    assert (done.status, done.resolution) == ("resolved", "refunded")
    with pytest.raises(ConfigError, match="already resolved"):
        inbox.resolve(pid, "again")
    with pytest.raises(ConfigError, match="no packet with id 99"):
        inbox.get(99)
    assert [x.id for x in inbox.list(status="resolved")] == [pid]
    assert inbox.list(status="open") == []


def test_same_key_from_many_threads_files_one_packet(inbox):
    ids: list[int] = []
    threads = [
        threading.Thread(target=lambda: ids.append(inbox.add(packet(key="row-7"))))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and inbox.count() == 1


def test_bad_url():
    with pytest.raises(ConfigError, match="is not a database URL"):
        Inbox("not a url")


@pytest.mark.parametrize("driver", ["pg8000", "nosuchdriver"])
def test_a_database_that_cannot_be_opened_is_named_without_its_password(driver):
    with pytest.raises(SlmstackError) as caught:
        Inbox(f"postgresql+{driver}://app:s3cr3t-pw@db.internal/desk")
    assert "s3cr3t-pw" not in str(caught.value) and "db.internal" in str(caught.value)


@pytest.mark.parametrize("url", ["mysql://app@db.internal/desk", "mssql+pyodbc://db/desk"])
def test_a_database_other_than_sqlite_or_postgresql_is_refused_as_such(url):
    # It was "needs the 'MySQLdb' package ... pip install 'slmstack[postgres]'": no fix.
    with pytest.raises(ConfigError, match=r"runs on SQLite or PostgreSQL; .* is (mysql|mssql)"):
        Inbox(url)


# ---------------------------------------------------------------- guarded opening and resolving


def test_resolve_a_packet_claimed_by_someone_else_needs_force(inbox):
    pid = inbox.add(packet())
    inbox.claim(pid, "ana")
    with pytest.raises(InboxError, match=r"packet 1 is claimed by 'ana', not 'bo'; .*--force"):
        inbox.resolve(pid, "done", who="bo")
    assert inbox.get(pid).status == "claimed"
    done = inbox.resolve(pid, "done", who="bo", force=True)
    assert (done.status, done.claimed_by, done.resolution) == ("resolved", "bo", "done")
    mine = inbox.add(packet(key="k2"))
    inbox.claim(mine, "ana")
    assert inbox.resolve(mine, "ok", who="ana").claimed_by == "ana"
    open_one = inbox.add(packet(key="k3"))
    assert inbox.resolve(open_one, "ok", who="bo").claimed_by == "bo"


def test_a_reader_never_creates_an_inbox(tmp_path):
    folder = tmp_path / "typo"
    with pytest.raises(InboxError, match=r"inbox folder .*typo does not exist"):
        Inbox(f"sqlite:///{folder / 'inbox.db'}", create=False)
    assert not folder.exists()
    with pytest.raises(InboxError, match=r"inbox .*nope\.db does not exist"):
        Inbox(f"sqlite:///{tmp_path / 'nope.db'}", create=False)
    assert not (tmp_path / "nope.db").exists()


def test_a_file_that_is_not_a_database(tmp_path):
    notes = tmp_path / "notes.db"
    notes.write_text("not a database\n" * 200)
    for create in (True, False):
        with pytest.raises(InboxError, match=r"notes\.db is not an inbox database .*`inbox:`"):
            Inbox(f"sqlite:///{notes}", create=create)
    assert notes.read_text().startswith("not a database")


def test_a_sqlite_database_of_something_else_is_not_an_inbox(tmp_path):
    import sqlite3

    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("create table users (id integer)")
    with pytest.raises(InboxError, match="not an slmstack inbox"):
        Inbox(f"sqlite:///{other}", create=False)
    with sqlite3.connect(other) as conn:  # and nothing was added to it
        tables = [r[0] for r in conn.execute("select name from sqlite_master")]
    assert tables == ["users"]


# ---------------------------------------------------------------- the command line

WF = """\
name: desk
inbox: sqlite:///queue/inbox.db
steps:
  - escalate: {reason: needs a person, message: "A colleague will reply."}
"""


@pytest.fixture
def desk(tmp_path, monkeypatch):
    """A workflow that always escalates, its inbox relative to the file, and one packet."""
    monkeypatch.delenv("SLMSTACK_INBOX_URL", raising=False)
    wf = tmp_path / "flows" / "desk.yaml"
    wf.parent.mkdir()
    wf.write_text(WF)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the inbox is found relative to the file, not here
    return wf


def cli(*args):
    from typer.testing import CliRunner

    from slmstack.cli.app import app

    return CliRunner().invoke(app, list(args))


def test_run_prints_the_packet_id_and_the_inbox(desk):
    res = cli("run", str(desk), "my parcel never arrived")
    assert res.exit_code == 0, res.output
    url = f"sqlite:///{desk.parent / 'queue' / 'inbox.db'}"
    assert f"packet 1 filed in the inbox {url}" in res.stdout
    assert f"slmstack inbox show 1 --db {url}" in res.stdout
    res = cli("run", str(desk), "second", "--json")  # stdout stays JSON; the note on stderr
    assert json.loads(res.stdout)["escalation"]["packet_id"] == 2
    assert f"packet 2 filed in the inbox {url}" in res.stderr


def test_batch_run_prints_the_inbox(desk, tmp_path):
    texts = tmp_path / "in.txt"
    texts.write_text("one\ntwo\n")
    res = cli("run", str(desk), "--input", str(texts), "--output", str(tmp_path / "o.jsonl"))
    assert res.exit_code == 0, res.output
    assert "2 packets filed in the inbox sqlite:///" in res.stdout


def test_inbox_list_reads_the_workflows_inbox_or_the_environment(desk, monkeypatch):
    assert cli("run", str(desk), "my parcel never arrived").exit_code == 0
    res = cli("inbox", "list", "--workflow", str(desk), "--json")
    assert res.exit_code == 0, res.output
    assert [p["text"] for p in json.loads(res.stdout)] == ["my parcel never arrived"]
    monkeypatch.setenv("SLMSTACK_INBOX_URL", f"sqlite:///{desk.parent / 'queue' / 'inbox.db'}")
    res = cli("inbox", "list", "--json")
    assert [p["id"] for p in json.loads(res.stdout)] == [1]


def test_inbox_list_without_an_inbox_says_how_to_name_one(desk):
    res = cli("inbox", "list")
    assert res.exit_code == 2
    assert "pass --workflow FILE" in res.stderr and "$SLMSTACK_INBOX_URL" in res.stderr
    assert not list(desk.parent.parent.joinpath("elsewhere").iterdir())  # no inbox made


def test_inbox_db_in_a_missing_folder_is_an_error(tmp_path):
    res = cli("inbox", "list", "--db", f"sqlite:///{tmp_path / 'typo' / 'inbox.db'}")
    assert res.exit_code == 2 and "typo does not exist" in res.stderr
    assert not (tmp_path / "typo").exists()


def test_cli_resolve_of_someone_elses_packet_needs_force(desk):
    assert cli("run", str(desk), "my parcel never arrived").exit_code == 0
    at = ["--workflow", str(desk)]
    assert cli("inbox", "claim", "1", "--as", "ana", *at).exit_code == 0
    res = cli("inbox", "resolve", "1", "--note", "refunded", "--as", "bo", *at)
    assert res.exit_code == 2 and "claimed by 'ana', not 'bo'" in res.stderr
    assert "--force" in res.stderr
    res = cli("inbox", "resolve", "1", "--note", "refunded", "--as", "bo", "--force", *at)
    assert res.exit_code == 0, res.output
    shown = json.loads(cli("inbox", "show", "1", *at, "--json").stdout)
    assert (shown["status"], shown["claimed_by"]) == ("resolved", "bo")


def test_inbox_list_shows_a_readable_preview_of_the_text(desk):
    long = "My parcel never arrived and nobody answers the phone. " * 4
    assert cli("run", str(desk), long).exit_code == 0
    res = cli("inbox", "list", "--workflow", str(desk))
    assert res.exit_code == 0, res.output
    preview = next(line for line in res.stdout.splitlines() if "My parcel" in line).strip()
    # One line, far longer than the 11 characters a squeezed table column used to allow,
    # cut with an ellipsis rather than wrapped.
    assert preview.startswith("My parcel never arrived and nobody answers the phone.")
    assert len(preview) >= 60 and preview.endswith("…")
    assert "needs a person" in res.stdout


def test_an_empty_note_and_a_limit_below_one_are_refused(tmp_path):
    from slmstack.errors import InboxError

    inbox = Inbox(f"sqlite:///{tmp_path / 'i.db'}")
    with pytest.raises(InboxError, match="limit must be at least 1"):
        inbox.list(limit=-1)
    with pytest.raises(DataError, match="resolution note is empty"):
        inbox.resolve(1, "  ")


def test_the_inbox_itself_refuses_what_no_database_column_can_hold(tmp_path):
    """The checks live in the library, so every front end (CLI, HTTP, console, Python) gets them."""
    inbox = Inbox(f"sqlite:///{tmp_path / 'i.db'}")
    inbox.add(Packet(workflow="w", text="help", reason="r", why="y"))
    with pytest.raises(ConfigError, match="cannot exist: ids run from 1 up"):
        inbox.get(2**63)
    with pytest.raises(DataError, match="the name has 201 characters; keep it to 200"):
        inbox.claim(1, "a" * 201)
    with pytest.raises(DataError, match="the name is not valid Unicode"):
        inbox.resolve(1, "done", who="ana\ud800")
    with pytest.raises(DataError, match="the resolution note holds a NUL"):
        inbox.resolve(1, "done\x00")
    assert inbox.get(1).status == "open"  # nothing refused changed the packet
    assert inbox.claim(1, "  ana ").claimed_by == "ana"


def test_cli_shows_a_customers_text_as_written_never_as_markup(desk):
    text = "charged twice [/] see [link=http://evil.example]click here[/link]"
    assert cli("run", str(desk), text).exit_code == 0
    at = ["--workflow", str(desk)]
    res = cli("inbox", "show", "1", *at)
    assert res.exit_code == 0, res.output
    assert "[/]" in res.stdout and "[/link]" in res.stdout and "[link=" in res.stdout
    blank = cli("inbox", "claim", "1", "--as", "  ", *at)
    assert blank.exit_code == 2 and "the name is empty" in blank.stderr
    assert cli("inbox", "claim", "99999999999999999999", "--as", "ana", *at).exit_code == 2


NESTED = """\
name: desk
inbox: sqlite:///queue/inbox.db
steps:
  - block: hand_off
blocks:
  hand_off:
    - template: {id: note, text: "Noted."}
    - escalate: {reason: needs a person}
"""


def test_cli_show_prints_the_whole_trace_not_only_its_top_step(desk):
    """A packet's steps are nested (route → block → cascade → skill); show walks them all."""
    desk.write_text(NESTED)
    assert cli("run", str(desk), "my parcel never arrived").exit_code == 0
    res = cli("inbox", "show", "1", "--workflow", str(desk))
    assert res.exit_code == 0, res.output
    assert "block hand_off" in res.stdout
    assert "note" in res.stdout and "Noted." in res.stdout
    assert "escalate → human" in res.stdout  # the step that handed off, two levels down
    assert "needs a person" in res.stdout


def test_cli_run_prints_the_answer_as_written_never_as_markup(desk):
    """An answer quotes the customer (a template's {input}, an LLM's reply): "[/]" in it
    crashed `slmstack run`, and "[link=...]" hid text behind a link."""
    desk.write_text('name: echo\nsteps:\n  - template: {id: reply, text: "You said: {input}"}\n')
    for text in ("my order [/] is late", "see [link=http://evil.example]here[/link]"):
        res = cli("run", str(desk), text)
        assert res.exit_code == 0, res.output
        assert f"You said: {text}" in res.stdout
        assert res.stdout.startswith("You said:"), "no route: no empty route before a colon"


def test_a_packet_whose_entity_or_trace_node_is_not_an_object_is_refused(inbox):
    base = dict(workflow="w", text="t", reason="r", why="y")
    with pytest.raises(DataError, match=r"packet entities must be a list of objects.*'loose'"):
        inbox.add(Packet(**base, entities=({"text": "4417"}, "loose")))  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"packet trace must be a list of objects"):
        inbox.add_many([Packet(**base, trace=["a plain string"])])  # type: ignore[list-item]
    assert inbox.list(status="all") == []  # nothing was filed
