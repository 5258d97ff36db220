"""The console without a browser: auth on every route, CSRF, the inbox actions, reports,
and a resolved packet becoming training data that ``train classify --resume`` uses."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from console_server import ANA_KEY, AUTH, BEN_KEY, KEYS_ENV, PACKETS, seed_ledger
from fixtures import TRAIN, write_csv
from serve_doubles import write_server
from slmstack.cli.app import app as cli
from slmstack.costs.ledger import LedgerRow
from slmstack.serve import create_app
from slmstack.serve.asgi import route_table
from slmstack.serve.console.charts import Series, line_chart
from slmstack.serve.console.report_data import escalation_by_day, latency_by_target, percentile
from slmstack.workflows import Inbox, Packet

HTML = {"accept": "text/html"}
ANA = {"Authorization": f"Bearer {ANA_KEY}"}


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv(KEYS_ENV, f"ana:{ANA_KEY},ben:{BEN_KEY}")
    write_server(tmp_path, AUTH)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "spend.html").write_text("<h1>Spend</h1>")
    inbox = Inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    for packet in PACKETS:
        inbox.add(packet)
    return tmp_path


@pytest.fixture
def client(folder):
    with TestClient(create_app(folder / "serve.yaml")) as c:
        yield c


def sign_in(client, key=ANA_KEY):
    client.get("/console/inbox", headers=HTML)  # the 401 page sets the CSRF cookie
    token = client.cookies.get("slmstack_csrf")
    response = client.post("/console/login", data={"key": key, "csrf": token, "next": "/console/reports"},
                           follow_redirects=False)  # fmt: skip
    return response, token


def test_every_console_route_is_401_without_a_key(client):
    routes = [
        (path, methods) for path, methods in route_table(client.app) if path.startswith("/console")
    ]
    assert len(routes) >= 15
    for path, methods in routes:
        url = path.replace("{packet_id}", "1").replace("{name}", "console.css")
        for method in methods:
            for headers in ({}, HTML, {"Authorization": "Bearer wrong-key-0123456789"}):
                response = client.request(method, url, headers=headers, follow_redirects=False)
                assert response.status_code == 401, (method, url, headers)
                assert "slmstack_console=" not in response.headers.get("set-cookie", "")
            page = client.request(method, url, headers=HTML)
            assert 'name="key"' in page.text  # a browser gets the sign-in form
            assert "sign in at /console/login" in client.request(method, url).json()["detail"]


def test_sign_in_sets_an_httponly_strict_cookie_that_works_only_on_the_console(client):
    response, _ = sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/console/reports"
    cookie = response.headers["set-cookie"]
    for part in ("HttpOnly", "SameSite=Strict", "Path=/console"):
        assert part in cookie
    assert client.get("/console/inbox").status_code == 200
    # The API stays Bearer-only: the cookie does not authorise it, even sent by hand.
    forged = client.get("/v1/inbox", headers={"cookie": f"slmstack_console={ANA_KEY}"})
    assert forged.status_code == 401
    page = client.get("/console/inbox")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert not re.search(r"""(src|href)=["']https?://""", page.text)  # nothing from elsewhere


def test_sign_in_refuses_a_wrong_key_a_missing_token_and_another_origin(client):
    client.get("/console/inbox", headers=HTML)
    token = client.cookies.get("slmstack_csrf")
    wrong = client.post(
        "/console/login", data={"key": "nope-0123456789abcdef", "csrf": token}, headers=HTML
    )
    assert wrong.status_code == 401 and "not accepted" in wrong.text
    no_token = client.post("/console/login", data={"key": ANA_KEY}, headers=HTML)
    assert no_token.status_code == 403 and "expired" in no_token.text
    foreign = client.post("/console/login", data={"key": ANA_KEY, "csrf": token},
                          headers={"origin": "https://evil.example", **HTML})  # fmt: skip
    assert foreign.status_code == 403
    assert client.get("/console/inbox").status_code == 401  # still signed out


def test_signing_in_from_a_page_with_any_character_in_its_path(client, folder):
    (folder / "reports" / "报告 1.html").write_text("<h1>Report</h1>")
    url = "/console/reports/files/%E6%8A%A5%E5%91%8A%201.html"
    page = client.get(url, headers=HTML)
    next_path = re.search(r'name="next" value="([^"]*)"', page.text).group(1)
    token = client.cookies.get("slmstack_csrf")
    response = client.post("/console/login", data={"key": ANA_KEY, "csrf": token, "next": next_path},
                           follow_redirects=False)  # fmt: skip
    assert response.status_code == 303 and response.headers["location"] == url
    assert client.get(url).text == "<h1>Report</h1>"


def test_a_removed_key_ends_the_session(client):
    client.cookies.set("slmstack_console", "k-gone-0123456789abcdef", path="/console")
    response = client.get("/console/inbox", headers=HTML)
    assert response.status_code == 401 and "no longer accepted" in response.text
    assert "Max-Age=0" in response.headers["set-cookie"]


def test_forms_need_the_csrf_token_from_a_browser(client):
    _, token = sign_in(client)
    refused = client.post("/console/inbox/1/claim", data={})
    assert refused.status_code == 403 and "expired" in refused.text
    ok = client.post("/console/inbox/1/claim", data={"csrf": token}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"].startswith(
        "/console/inbox/1?done=claimed"
    )


def test_a_header_a_browser_sends_by_itself_does_not_skip_csrf(tmp_path, monkeypatch):
    """Behind a proxy's HTTP Basic auth the browser adds `Authorization: Basic` to every
    request, a forged cross-site form included: only a Bearer key (a script) skips CSRF."""
    basic = {"authorization": "Basic YW5hOnB3", "origin": "https://evil.example"}
    write_server(tmp_path)
    inbox = Inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    inbox.add(PACKETS[1])
    with TestClient(create_app(tmp_path / "serve.yaml")) as client:
        forged = client.post("/console/inbox/1/claim", data={"who": "mallory"}, headers=basic)
        assert forged.status_code == 403 and inbox.get(1).status == "open"
    monkeypatch.setenv(KEYS_ENV, f"ana:{ANA_KEY}")
    write_server(tmp_path, AUTH)
    with TestClient(create_app(tmp_path / "serve.yaml")) as client:
        sign_in(client)  # with keys, the cookie still signs the browser in
        page = client.get("/console/inbox", headers={"authorization": "Basic YW5hOnB3"})
        assert page.status_code == 200
        forged = client.post("/console/inbox/1/claim", data={}, headers=basic)
        assert forged.status_code == 403 and inbox.get(1).status == "open"


def test_a_proxy_that_rewrites_the_host_is_named_as_the_cause(client):
    _, token = sign_in(client)
    behind = client.post("/console/inbox/1/claim", data={"csrf": token},
                         headers={"origin": "https://desk.example.com"})  # fmt: skip
    assert behind.status_code == 403 and "proxy_set_header Host $host" in behind.text


def test_two_agents_cannot_claim_one_packet_and_only_the_claimant_resolves(client):
    BEN = {"Authorization": f"Bearer {BEN_KEY}"}
    assert (
        client.post("/console/inbox/2/claim", headers=ANA, follow_redirects=False).status_code
        == 303
    )
    taken = client.post("/console/inbox/2/claim", headers=BEN)
    assert taken.status_code == 409 and "claimed by &#39;ana&#39;" in taken.text
    assert "pick another open packet" in taken.text
    blocked = client.post("/console/inbox/2/resolve", data={"note": "done"}, headers=BEN)
    assert blocked.status_code == 409 and "claimed by &#39;ana&#39;" in blocked.text
    empty = client.post("/console/inbox/2/resolve", data={"note": " "}, headers=ANA)
    assert empty.status_code == 422 and "Resolution note" in empty.text
    long = client.post("/console/inbox/2/resolve", data={"note": "sent", "label": "x" * 201},
                       headers=ANA)  # fmt: skip
    assert long.status_code == 422 and "label has 201 characters" in long.text
    assert client.get("/v1/inbox/2", headers=ANA).json()["status"] == "claimed"  # not resolved
    nul = client.post("/console/inbox/2/resolve", data={"note": "a\x00b"}, headers=ANA)
    assert nul.status_code == 422 and "NUL" in nul.text
    latin = client.post("/console/inbox/2/resolve", content=b"note=caf%E9",
                        headers={**ANA, "content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert latin.status_code == 400 and "not UTF-8" in latin.text
    huge = client.get("/console/inbox/9223372036854775808", headers=ANA)
    assert huge.status_code == 422  # not a 500 from SQLite
    done = client.post("/console/inbox/2/resolve", data={"note": "sent", "label": "card"},
                       headers=ANA, follow_redirects=False)  # fmt: skip
    assert done.headers["location"].startswith("/console/inbox/2?done=labelled")
    again = client.post("/console/inbox/2/resolve", data={"note": "x"}, headers=ANA)
    assert again.status_code == 409 and "already resolved" in again.text
    export = client.get("/console/examples/export.jsonl", headers=ANA)
    assert [json.loads(x)["label"] for x in export.text.splitlines()] == ["card"]


def test_without_keys_an_agent_gives_a_name(tmp_path):
    write_server(tmp_path)
    Inbox(f"sqlite:///{tmp_path / 'inbox.db'}").add(PACKETS[1])
    with TestClient(create_app(tmp_path / "serve.yaml")) as client:
        client.get("/console/inbox")
        token = client.cookies.get("slmstack_csrf")
        nameless = client.post("/console/inbox/1/claim", data={"csrf": token})
        assert nameless.status_code == 422 and "Your name" in nameless.text
        named = client.post("/console/inbox/1/claim", data={"csrf": token, "who": "Ana"},
                            follow_redirects=False)  # fmt: skip
        assert named.status_code == 303
        assert "by <strong>Ana</strong>" in client.get("/console/inbox/1").text


def test_an_agent_name_in_any_script_is_remembered_and_the_cookie_is_secure(tmp_path):
    write_server(tmp_path)
    inbox = Inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    inbox.add(PACKETS[1])
    with TestClient(create_app(tmp_path / "serve.yaml"), base_url="https://testserver") as client:
        client.get("/console/inbox")
        token = client.cookies.get("slmstack_csrf")
        named = client.post("/console/inbox/1/claim", data={"csrf": token, "who": "Łukasz 王"},
                            follow_redirects=False)  # fmt: skip
        assert named.status_code == 303  # not a 500 after the claim was made
        cookie = named.headers["set-cookie"]
        for part in ("slmstack_agent=", "HttpOnly", "SameSite=Strict", "Path=/console", "Secure"):
            assert part in cookie, part
        assert inbox.get(1).claimed_by == "Łukasz 王"
        page = client.get("/console/inbox/1").text
        assert 'value="Łukasz 王"' in page  # the next form is filled in with the name


def test_inbox_pages_show_filters_empty_states_and_errors(client):
    page = client.get("/console/inbox?status=all", headers=ANA).text
    assert "charged twice" in page and "travelling on Friday" in page
    assert "No open packets match" in client.get("/console/inbox?q=zzz", headers=ANA).text
    bad = client.get("/console/inbox?status=lost", headers=ANA)
    assert bad.status_code == 422 and "Pick one of the tabs" in bad.text
    missing = client.get("/console/inbox/99", headers=ANA)
    assert missing.status_code == 404 and "There is no packet 99" in missing.text
    detail = client.get("/console/inbox/1", headers=ANA).text
    for shown in (
        "ORDER",
        "4417",
        "double-charged",
        "confidence 0.41 &lt; threshold 0.55",
        "triage",
    ):
        assert shown in detail, shown
    assert "No labelled examples yet" in client.get("/console/examples", headers=ANA).text


def test_an_empty_inbox_says_no_escalations_yet(tmp_path, monkeypatch):
    monkeypatch.setenv(KEYS_ENV, f"ana:{ANA_KEY}")
    write_server(tmp_path, AUTH)
    with TestClient(create_app(tmp_path / "serve.yaml")) as client:
        assert "No escalations yet" in client.get("/console/inbox", headers=ANA).text


def test_playground_shows_route_steps_and_cost(client):
    page = client.post("/console/playground", data={"workflow": "desk", "text": "please refund my order"},
                       headers=ANA).text  # fmt: skip
    assert "We will handle your refund request." in page and "completed" in page
    assert page.count('<td class="indent-') >= 2  # the cascade and its tier
    unknown = client.post(
        "/console/playground", data={"workflow": "nope", "text": "x"}, headers=ANA
    )
    assert unknown.status_code == 422 and "this server runs: desk" in unknown.text
    nul = client.post("/console/playground", data={"workflow": "desk", "text": "refund\x00 now"},
                      headers=ANA)  # fmt: skip
    assert nul.status_code == 422 and "NUL character" in nul.text  # never filed in the inbox


def test_a_playground_run_is_shown_while_the_ledger_cannot_be_written(client, folder):
    import sqlite3

    ledger_db = sqlite3.connect(folder / "ledger.db")
    ledger_db.execute("ALTER TABLE slmstack_ledger RENAME TO away")  # every write fails
    ledger_db.commit()
    try:
        page = client.post("/console/playground", data={"workflow": "desk", "text": "please "
                           "refund my order"}, headers=ANA)  # fmt: skip
    finally:
        ledger_db.execute("ALTER TABLE away RENAME TO slmstack_ledger")
        ledger_db.commit()
        ledger_db.close()
    # The run was made (and metered): the page shows it, not "The run failed" and a 422.
    assert page.status_code == 200 and "We will handle your refund request." in page.text
    assert "ledger database cannot be written now" in page.text


def test_reports_show_spend_escalation_rate_latency_and_cli_reports(client, folder):
    seed_ledger(folder, days=5)
    page = client.get("/console/reports?days=7&by=day", headers=ANA).text
    assert page.count('<svg class="chart"') == 3 and "All to gpt-4" in page
    assert "spend.html" in page and "p95" in page
    report = client.get("/console/reports/files/spend.html", headers=ANA)
    assert (
        report.text == "<h1>Spend</h1>" and "sandbox" in report.headers["content-security-policy"]
    )
    assert client.get("/console/reports/files/..%2Fserve.yaml", headers=ANA).status_code == 404
    bad = client.get("/console/reports?days=3", headers=ANA)
    assert bad.status_code == 422 and "Pick a period" in bad.text


def test_static_files_are_named_never_a_path(client):
    assert (
        client.get("/console/static/console.css", headers=ANA)
        .headers["content-type"]
        .startswith("text/css")
    )
    assert client.get("/console/static/..%2F__init__.py", headers=ANA).status_code == 404
    assert client.get("/console/static/render.py", headers=ANA).status_code == 404


def test_console_routes_are_not_in_the_api_spec(client):
    assert not [p for p in client.app.openapi()["paths"] if p.startswith("/console")]


def test_percentiles_and_escalation_rate_from_run_rows():
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50) == 5
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95) == 10
    at = datetime(2026, 1, 2, tzinfo=UTC)
    runs = [LedgerRow(f"r{i}", "", "desk", "", "run", at, latency_ms=i,
                      decision="escalated" if i < 2 else "completed") for i in range(8)]  # fmt: skip
    runs.append(LedgerRow("s", "", "skill:intent", "", "run", at, latency_ms=100))
    (day,) = escalation_by_day(runs, [at.date()])
    assert (day.runs, day.escalated, day.rate) == (8, 2, 0.25)  # skill calls left out
    desk, skill = latency_by_target(runs)
    assert (desk.target, desk.runs, desk.percentiles[50]) == ("desk", 8, 3)
    assert skill.percentiles[99] == 100


def test_charts_are_accessible_svg_and_pick_a_log_scale_for_wide_ranges():
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    wide = str(line_chart("Spend", days, [Series("stack", [0.001, 0.002, 0.001]),
                                         Series("llm", [1.0, 2.0, 1.5])]))  # fmt: skip
    assert "log scale" in wide and "<title>Spend</title>" in wide and "stack: 2026-01-01" in wide
    narrow = str(line_chart("Rate", days, [Series("r", [0.1, None, 0.3])], y_min=0, y_max=1))
    assert "log scale" not in narrow and narrow.count("<circle") == 2
    assert "No data" in str(line_chart("Empty", days, [Series("r", [None, None, None])]))
    assert "<script" not in wide + narrow and "style=" not in wide + narrow


@pytest.mark.slow
def test_a_resolved_packet_becomes_training_data_that_resume_trains_on(client, folder, tmp_path):
    """The loop closed end to end: resolve with a label, export, ``--resume`` uses it."""
    runner = CliRunner()
    train = write_csv(tmp_path / "train.csv")
    skill = tmp_path / "intent"
    trained = runner.invoke(cli, ["train", "classify", str(train), "--out", str(skill), "--json"])
    assert trained.exit_code == 0, trained.output
    inbox = Inbox(f"sqlite:///{folder / 'inbox.db'}")
    corrected = {1: "refund", 2: "card"}
    for text, label in [("my card is lost in the post", "card"), ("return my money now", "refund")]:
        from slmstack.workflows import Packet

        corrected[inbox.add(Packet(workflow="desk", text=text, reason="unclear", why="low"))] = (
            label
        )
    for packet_id, label in corrected.items():
        response = client.post(f"/console/inbox/{packet_id}/resolve", headers=ANA,
                               data={"note": "answered", "label": label}, follow_redirects=False)  # fmt: skip
        assert response.status_code == 303, response.text
    data = tmp_path / "examples.jsonl"
    export = runner.invoke(cli, ["inbox", "export-examples", "--db", str(folder / "inbox.db"),
                                 "--out", str(data), "--mix-with", str(train), "--json"])  # fmt: skip
    assert export.exit_code == 0, export.output
    assert json.loads(export.stdout)["rows"] == len(corrected) + len(TRAIN)
    resumed = runner.invoke(cli, ["train", "classify", str(data), "--resume", str(skill),
                                  "--out", str(tmp_path / "intent-v2"), "--json"])  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout)
    # Every exported row reached training: the agents' examples and the original data.
    assert summary["n_train"] + summary["n_val"] == len(corrected) + len(TRAIN)
    assert summary["labels"] == 3


def test_a_hand_built_packet_with_odd_parts_renders_escaped(folder):
    """A packet filed by hand or imported: parts missing or of another type, markup in
    every text. Its page shows what there is, escaped, never a 500."""
    xss = "<script>alert(1)</script>"
    inbox = Inbox(f"sqlite:///{folder / 'inbox.db'}")
    odd = dict(workflow=xss, text=xss * 2000, reason=xss, why=xss, intent=xss, summary=xss)
    ids = [
        inbox.add(Packet(**odd, entities=({"label": "ORDER"}, {"text": "4417"}))),
        inbox.add(Packet(**odd, trace=[
            {"kind": "skill"},  # no name
            {"name": "triage", "decision": "human"},  # a decision as a plain string
            {"name": xss, "kind": xss, "output": xss, "latency_ms": "12", "tokens": {"output": 3},
             "decision": {"taken": xss, "why": xss}, "children": "none"},
            {"name": "tier", "output": {"label": xss, "confidence": "0.5"}, "tokens": None},
        ])),
    ]  # fmt: skip
    # Inbox.add refuses a part that is not an object; a database written otherwise (by
    # hand, an older version, an import) may still hold one, and its page must show.
    import sqlite3

    with sqlite3.connect(folder / "inbox.db") as db:
        table = "slmstack_packets"
        for column, packet_id in (("entities", ids[0]), ("trace", ids[1])):
            (raw,) = db.execute(f"SELECT {column} FROM {table} WHERE id = ?", (packet_id,)).fetchone()
            loose = "loose" if column == "entities" else "a plain string"
            db.execute(f"UPDATE {table} SET {column} = ? WHERE id = ?",
                       (json.dumps([*json.loads(raw), loose]), packet_id))  # fmt: skip
    with TestClient(create_app(folder / "serve.yaml")) as client:
        for packet_id in ids:
            shown = client.get(f"/console/inbox/{packet_id}", headers=ANA)
            assert shown.status_code == 200, packet_id
            assert "<script>alert" not in shown.text and "&lt;script&gt;alert" in shown.text
        assert "4417" in client.get(f"/console/inbox/{ids[0]}", headers=ANA).text
        trace = client.get(f"/console/inbox/{ids[1]}", headers=ANA).text
        assert "triage" in trace and "human" in trace and "a plain string" in trace
        listed = client.get("/console/inbox?status=all", headers=ANA)
        assert listed.status_code == 200 and "<script>alert" not in listed.text


def test_a_wrong_value_in_a_console_address_is_a_page_not_json(client):
    for url, named in (
        ("/console/inbox?before=abc", "before in the address"),
        ("/console/reports?days=abc", "days in the address"),
        ("/console/inbox/abc", "packet_id in the path"),
        ("/console/inbox/0", "packet_id in the path"),
    ):
        shown = client.get(url, headers={**ANA, **HTML})
        assert shown.status_code == 422, url
        assert shown.headers["content-type"].startswith("text/html"), url
        assert named in shown.text and "Correct the address" in shown.text, url
    api = client.get("/v1/inbox/abc", headers=ANA)  # the API keeps its JSON
    assert api.status_code == 422 and api.json()["detail"][0]["loc"] == ["path", "packet_id"]


def test_paging_shows_each_packet_once_while_packets_arrive_and_are_claimed(folder):
    inbox = Inbox(f"sqlite:///{folder / 'inbox.db'}")
    for n in range(60):
        inbox.add(Packet(workflow="desk", text=f"message number {n}", reason="r", why="w"))
    ids = re.compile(r'<tr data-href="/console/inbox/(\d+)"')
    with TestClient(create_app(folder / "serve.yaml")) as client:
        seen: list[int] = []
        url = "/console/inbox"
        for _ in range(5):
            page = client.get(url, headers=ANA).text
            seen += [int(i) for i in ids.findall(page)]
            for _ in range(2):
                inbox.add(Packet(workflow="desk", text="a new one", reason="r", why="w"))
            inbox.claim(seen[-1], "ben")  # leaves the open list while the agent pages
            older = re.search(r'href="(\?[^"]*)">Older', page)
            if older is None:
                break
            url = "/console/inbox" + older.group(1).replace("&amp;", "&")
        assert sorted(seen, reverse=True) == seen and len(set(seen)) == len(seen) == 62
        assert "Page 3 of" in page
        newer = re.search(r'href="(\?[^"]*)">Newer', page)
        assert newer is not None and "after=" in newer.group(1)
        back = client.get("/console/inbox" + newer.group(1).replace("&amp;", "&"), headers=ANA)
        still_open = sorted(i for i in seen[:50] if inbox.get(i).status == "open")
        assert [int(i) for i in ids.findall(back.text)] == still_open[:25][::-1]
