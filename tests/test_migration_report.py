"""``slmstack migration report``: spend before and after, savings per month, per-task figures."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from slmstack.cli.app import app
from slmstack.costs import Ledger, LedgerRow
from slmstack.costs.prices import load_prices
from slmstack.errors import ConfigError
from slmstack.proxy import TrafficRow, TrafficStore
from slmstack.proxy.promote import Promotion, ShadowStore
from slmstack.proxy.report import build_report, percentile
from slmstack.proxy.report_html import render_html, stacked_bars
from slmstack.proxy.shadow import ShadowRow

T0 = datetime(2026, 11, 1, tzinfo=UTC)
SYSTEM = "You sort tickets."
A_PREFIX, A_SUFFIX = "Classify: ", "\nLabel:"
B_PREFIX = "Extract <fields> from: "


def call(n: int, at: timedelta, user: str, **kw) -> TrafficRow:
    defaults = dict(model="gpt-4", status=200, stream=False, system=SYSTEM, messages="[]",
                    params="{}", response="x", tokens_in=100, tokens_out=10,
                    latency_ms=500.0, cost_nusd=1_000_000)  # fmt: skip
    return TrafficRow(request_id=f"r{n:03d}", at=T0 + at, user=user, **{**defaults, **kw})


def crafted(tmp_path):
    """Task A: 4 LLM calls ($0.001 each), 6 student calls with tokens, 2 without, 1 unpriced
    LLM call, one audit ($0.002). Task B: 3 LLM calls ($0.0005) found by shadow, template.
    One call of no task. The span is one day exactly."""
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    a = A_PREFIX + "my card is lost{}" + A_SUFFIX
    rows = [call(i, timedelta(hours=i), a.format(i), task_id="t-a",
                 latency_ms=[400.0, 500.0, 600.0, 700.0][i]) for i in range(4)]  # fmt: skip
    rows += [call(10 + i, timedelta(hours=5 + i), a.format(10 + i), task_id="t-a",
                  answered_by="student", cost_nusd=0, tokens_source="counted",
                  latency_ms=5.0 + i) for i in range(6)]  # fmt: skip
    rows += [call(20 + i, timedelta(hours=12 + i), a.format(20 + i), task_id="t-a",
                  answered_by="student", cost_nusd=0, tokens_source="missing", tokens_in=0,
                  tokens_out=0, latency_ms=9.0) for i in range(2)]  # fmt: skip
    rows.append(call(30, timedelta(hours=15), a.format(30), task_id="t-a", model="mystery-llm",
                     cost_nusd=0, cost_status="unpriced"))  # fmt: skip
    rows += [call(40 + i, timedelta(hours=16 + i), B_PREFIX + f"receipt <b>{i}</b>",
                  cost_nusd=500_000, latency_ms=1000.0) for i in range(3)]  # fmt: skip
    rows.append(call(50, timedelta(days=1), "hello <script>alert(1)</script>", cost_nusd=500_000,
                     system="You chat."))  # fmt: skip
    store = TrafficStore(url)
    store.insert(rows)
    store.close()
    shadow = ShadowStore(url)

    def compared(rid, task, agree, kind="shadow"):
        return ShadowRow(rid, task, T0, float(agree), agree, "x", "y", 0.9, 3.0, kind)

    shadow.insert([compared("r040", "t-b", True), compared("r041", "t-b", False),
                   compared("r000", "t-a", True), compared("r001", "t-a", True),
                   compared("r002", "t-a", False, "cascade"),
                   compared("r010", "t-a", True, "audit")])  # fmt: skip
    shadow.record(Promotion("t-a", T0 + timedelta(hours=4), True, 200, 190, 0.91, 0.9, 0.95,
                            "agreement <ok> & fine", threshold=0.7, coverage=0.8))  # fmt: skip
    with Ledger(url) as ledger:
        ledger.append([LedgerRow("r010", "audit", "proxy", "/v1/chat/completions", "llm",
                                 T0 + timedelta(hours=5), model="gpt-4", cost_nusd=2_000_000,
                                 decision="priced")])  # fmt: skip
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps({"tasks": [
        {"task_id": "t-b", "kind": "extraction", "system": SYSTEM, "prefix": B_PREFIX,
         "suffix": "", "template": B_PREFIX + "{...}"},
    ]}))  # fmt: skip
    return url, tasks


def test_spend_before_after_and_savings_per_month_are_exact(tmp_path):
    url, tasks = crafted(tmp_path)
    report = build_report(url, load_prices(), tasks_file=tasks)
    # A: 4 x 0.001 recorded + 6 x (100 x 0.03 + 10 x 0.06) / 1000 by tokens + 2 x the task
    # mean 0.001 = 0.0276; B: 3 x 0.0005; no task: 0.0005.
    assert report.before_nusd == 27_600_000 + 1_500_000 + 500_000
    assert report.after_nusd == 4_000_000 + 2_000_000 + 1_500_000 + 500_000  # audit included
    assert report.priced_by == {"recorded": 8, "tokens": 6, "task mean": 2}
    assert report.unpriced_calls == 1 and report.audit_calls == 1
    assert report.span == timedelta(days=1)
    assert report.saved_per_month == Decimal("0.648000")  # 0.0216 a day x 30
    assert report.calls == 17 and report.student_calls == 8
    assert report.task_of == {"recorded": 13, "shadow": 2, "template": 1, "none": 1}
    # priced as another model, a call without tokens takes its task's mean tokens at that
    # model's prices, not the mean cost at the model the app asked for
    cheaper = build_report(url, load_prices(), tasks_file=tasks, price_as="gpt-4o-mini")
    assert cheaper.priced_by["task mean tokens"] == 2 and "task mean" not in cheaper.priced_by
    assert cheaper.before_nusd < report.before_nusd

    a, b, none = report.tasks
    assert (a.task_id, b.task_id, none.task_id) == ("t-a", "t-b", "")
    assert a.calls == 13 and a.local_share == pytest.approx(8 / 13)
    assert a.agreement["shadow"]["n"] == 2 and a.agreement["shadow"]["agreed"] == 2
    assert a.agreement["cascade"]["agreed"] == 0 and a.agreement["audit"]["rate"] == 1.0
    assert a.promotion is not None and a.promotion["threshold"] == 0.7
    assert a.promotion["coverage"] == 0.8 and a.promotion["promoted"] is True
    assert a.llm_ms == {"p50": 500.0, "p95": 700.0}  # the unpriced call's latency counts too
    assert a.student_ms_from == "served" and a.student_ms["p50"] == 8.0
    assert b.kind == "extraction" and b.calls == 3 and b.local_share == 0.0
    assert b.student_ms_from == "shadow" and b.student_ms["p50"] == 3.0
    assert b.agreement["shadow"]["rate"] == 0.5
    assert report.unit == "hour" and len(report.buckets) == 25
    assert report.buckets[5] == ("2026-11-01 05:00", 0, 1)
    assert sum(llm + st for _, llm, st in report.buckets) == 17

    shown = report.to_json()
    assert Decimal(shown["before_usd"]) == Decimal("0.0296")
    assert Decimal(shown["after_usd"]) == Decimal("0.008")
    assert shown["saved_per_month_usd"] == "0.648000"
    json.dumps(shown)  # JSON-safe


def test_html_is_self_contained_and_escaped(tmp_path):
    url, tasks = crafted(tmp_path)
    page = render_html(build_report(url, load_prices(), tasks_file=tasks))
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert "$0.6480" in page and "t-a" in page and "promoted" in page
    assert "<script" not in page and "agreement &lt;ok&gt; &amp; fine" in page
    assert "Extract &lt;fields&gt; from: {...}" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing loads from elsewhere


def test_old_databases_read_with_defaults(tmp_path):
    """A database from before serving: no answered_by, task_id, threshold, kind columns."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE slmstack_traffic (id INTEGER PRIMARY KEY, request_id TEXT, at DATETIME,"
            " model TEXT, status INT, system TEXT, user TEXT, response TEXT, tokens_in INT,"
            " tokens_out INT, tokens_source TEXT, latency_ms FLOAT, cost_nusd INT,"
            " cost_status TEXT, messages TEXT, params TEXT)"))  # fmt: skip
        for i in range(3):
            conn.execute(sa.text(
                "INSERT INTO slmstack_traffic VALUES (:i, :r, :at, 'gpt-4', 200, 's', 'u', 'x',"
                " 1, 1, 'upstream', 100.0, 1000, 'priced', '[]', '{}')"),
                {"i": i + 1, "r": f"r{i}", "at": (T0 + timedelta(days=2 * i)).replace(tzinfo=None)})  # fmt: skip
    engine.dispose()
    report = build_report(url, load_prices())
    assert report.calls == 3 and report.student_calls == 0
    assert report.before_nusd == report.after_nusd == 3000 and report.saved_per_month == 0
    assert report.unit == "day" and [b[1] for b in report.buckets] == [1, 0, 1, 0, 1]


def test_cli_writes_html_and_json_and_names_missing_pieces(tmp_path):
    url, tasks = crafted(tmp_path)
    runner = CliRunner()
    out = tmp_path / "out" / "report.html"
    result = runner.invoke(app, ["migration", "report", "--ledger", url, "--out", str(out),
                                 "--tasks", str(tasks), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["saved_per_month_usd"] == "0.648000"
    assert "<svg" in out.read_text()
    result = runner.invoke(app, ["migration", "report", "--ledger", url, "--out", str(out),
                                 "--tasks", str(tasks)])  # fmt: skip
    assert result.exit_code == 0 and "saved per month: $0.648" in " ".join(result.output.split())
    assert "E-" not in result.output  # money for people, not Decimal's exponent form
    result = runner.invoke(app, ["migration", "report", "--ledger", url])
    assert result.exit_code == 2 and "--out report.html" in result.output
    result = runner.invoke(app, ["migration", "report", "--ledger", str(tmp_path / "no.db"),
                                 "--json"])  # fmt: skip
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["migration", "report", "--ledger", url, "--json",
                                 "--price-as", "gpt-99"])  # fmt: skip
    assert result.exit_code == 2 and "gpt-99" in result.output
    with pytest.raises(ConfigError, match="slmstack discover --json"):
        build_report(url, load_prices(), tasks_file=tmp_path / "none.json")


def test_chart_and_percentiles():
    svg = stacked_bars("calls <per day>", [("2026-11-01", 3, 1), ("2026-11-02", 0, 4)],
                       ("LLM", "student"))  # fmt: skip
    assert svg.count("<rect") == 3 and "calls &lt;per day&gt;" in svg
    assert "2026-11-01: LLM 3, student 1" in svg
    assert percentile([], 0.5) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == 4.0
