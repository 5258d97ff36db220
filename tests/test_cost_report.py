"""Spend reports: grouping, periods, the all-to-the-LLM counterfactual, HTML and the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from slmstack.cli.app import app
from slmstack.costs import Ledger, LedgerRow, report_html, spend_report
from slmstack.costs.ledger import LLM_CALL
from slmstack.errors import ConfigError


def at(day: int) -> datetime:
    return datetime(2025, 5, day, 12, 0, tzinfo=UTC)


# (request, path, workflow, step, model, day, tokens in, tokens out, nano-dollars)
ROWS = [
    ("r1", "s0", "desk", "intent", "intent", 1, 10, 0, 300),
    ("r1", "s1", "desk", "escalate → big", "gpt-4o", 1, 100, 50, 750_000),
    ("r2", "s0", "desk", "intent", "intent", 2, 20, 0, 400),
    ("r3", "s0", "invoices", "fields", "fields", 2, 500, 0, 9_000),
    ("r4", "s0", "invoices", "fields", "fields", 3, 400, 0, 8_000),
]


@pytest.fixture(autouse=True)
def _no_env_prices(monkeypatch):
    monkeypatch.delenv("SLMSTACK_PRICES", raising=False)


@pytest.fixture
def ledger_file(tmp_path):
    path = tmp_path / "ledger.db"
    with Ledger(f"sqlite:///{path}") as ledger:
        for req, p, wf, step, model, day, t_in, t_out, nano in ROWS:
            ledger.append([
                LedgerRow(req, p, wf, step, "skill", at(day), model=model, tokens_in=t_in,
                          tokens_out=t_out, cost_nusd=nano),
                LedgerRow(req, "", wf, "", "run", at(day), tokens_in=999, cost_nusd=10**12),
            ])  # fmt: skip
    return path


def gpt4(t_in: int, t_out: int) -> Decimal:
    return (t_in * Decimal("0.03") + t_out * Decimal("0.06")) / 1000


def test_spend_grouped_by_each_key_with_the_counterfactual(ledger_file):
    ledger = Ledger(f"sqlite:///{ledger_file}", create=False)
    by_wf = spend_report(ledger, by="workflow")
    assert [(r.key, r.requests, r.steps, r.cost) for r in by_wf.rows] == [
        ("desk", 2, 3, Decimal("0.000750700")),
        ("invoices", 2, 2, Decimal("0.000017000")),
    ]  # run rows (with their huge cost here) are not counted again
    assert by_wf.rows[0].llm_cost == gpt4(130, 50)
    assert by_wf.total.cost == Decimal("0.0007677") and by_wf.total.requests == 4
    assert by_wf.total.llm_cost == gpt4(1030, 50)
    by_step = spend_report(ledger, by="step", compare_to=None)
    assert [r.key for r in by_step.rows] == [
        "desk: escalate → big",
        "desk: intent",
        "invoices: fields",
    ]
    assert by_step.rows[0].llm_cost is None
    by_model = spend_report(ledger, by="model", compare_to="gpt-4o-mini")
    assert {r.key: r.tokens_in for r in by_model.rows} == {
        "fields": 900,
        "gpt-4o": 100,
        "intent": 30,
    }
    assert by_model.rows[0].llm_cost == 900 * Decimal("0.00015") / 1000
    by_day = spend_report(ledger, by="day", since=date(2025, 5, 2), until=date(2025, 5, 2))
    assert [(r.key, r.requests, r.cost) for r in by_day.rows] == [
        ("2025-05-02", 2, Decimal("0.0000094"))
    ]
    assert by_day.total.requests == 2
    ledger.close()


def test_bad_report_arguments(ledger_file):
    ledger = Ledger(f"sqlite:///{ledger_file}", create=False)
    with pytest.raises(ConfigError, match=r"ends \(2025-05-01\) before it starts \(2025-05-03\)"):
        spend_report(ledger, since=date(2025, 5, 3), until=date(2025, 5, 1))
    with pytest.raises(ConfigError, match="cannot group spend by 'hour'"):
        spend_report(ledger, by="hour")
    with pytest.raises(ConfigError, match=r"model 'gpt-5-ultra' has no price"):
        spend_report(ledger, compare_to="gpt-5-ultra")
    ledger.close()


def test_comparing_with_a_model_priced_by_machine_time_names_the_fix(ledger_file, tmp_path):
    """It told a CLI user to 'cost its calls with compute_cost', a Python method."""
    prices = tmp_path / "prices.yaml"
    prices.write_text("models: {my-vllm: {machine: gpu-l4}}\n")
    res = cli("cost", "report", "--ledger", str(ledger_file), "--prices", str(prices),
              "--compare-to", "my-vllm")  # fmt: skip
    said = " ".join(res.output.split())
    assert res.exit_code != 0 and "compute_cost" not in said
    assert "'my-vllm' is priced by machine time (gpu-l4), not per token" in said
    assert "name a model priced per token, or give 'my-vllm' input_per_1k" in said


def test_the_html_page_is_self_contained(ledger_file):
    with Ledger(f"sqlite:///{ledger_file}", create=False) as ledger:
        page = report_html(spend_report(ledger, by="model"))
    assert page.startswith("<!DOCTYPE html>") and "<td>gpt-4o</td>" in page
    assert (
        len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,[A-Za-z0-9+/=]{500,}">', page))
        == 2
    )
    assert "http" not in page.lower()  # no external script, style, font or image
    assert "all to gpt-4" in page and "$0.000768" in page


def test_html_without_matplotlib_names_the_extra(ledger_file):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from slmstack.costs import Ledger, report_html, spend_report\n"
        f"ledger = Ledger('sqlite:///{ledger_file}', create=False)\n"
        "try:\n    report_html(spend_report(ledger))\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "MissingDependencyError" in out.stdout and "pip install 'slmstack[report]'" in out.stdout


# ---------------------------------------------------------------- the command line


def cli(*args):
    return CliRunner().invoke(app, list(args))


def test_cli_prints_the_table_writes_html_and_json(ledger_file, tmp_path):
    page = tmp_path / "reports" / "spend.html"  # its folder is made, as `eval --html` does
    res = cli("cost", "report", "--ledger", str(ledger_file), "--by", "day", "--html", str(page))
    assert res.exit_code == 0, res.output
    assert (
        "2025-05-01" in res.stdout
        and "all to gpt-4" in res.stdout
        and "prices: slmstack 20" in res.stdout
    )
    assert page.read_text().startswith("<!DOCTYPE html>")
    res = cli(
        "cost", "report", "--ledger", f"sqlite:///{ledger_file}", "--json", "--since", "2025-05-03"
    )
    data = json.loads(res.stdout)
    assert data["rows"] == [
        {
            "key": "invoices",
            "requests": 1,
            "steps": 1,
            "tokens_in": 400,
            "tokens_out": 0,
            "cost_usd": "0.000008000",
            "compute_s": 0.0,
            "llm_cost_usd": "0.012000000",  # fixed point at one scale
            "unknown_cost_steps": 0,
        }
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "May 1"], "--since must be a date as YYYY-MM-DD; got 'May 1'"),
        (["--by", "hour"], "--by must be one of workflow, step, model, day; got 'hour'"),
        (["--compare-to", "gpt4"], "model 'gpt4' has no price"),
    ],
)
def test_cli_errors_are_one_line(ledger_file, args, message):
    res = cli("cost", "report", "--ledger", str(ledger_file), *args)
    assert res.exit_code == 2 and message in res.stderr


def test_cli_never_creates_a_ledger(tmp_path):
    res = cli("cost", "report", "--ledger", str(tmp_path / "typo.db"))
    assert res.exit_code == 2 and "typo.db does not exist" in res.stderr
    assert not (tmp_path / "typo.db").exists()


def test_calls_of_unknown_cost_are_counted_and_said_not_hidden_as_zero(tmp_path):
    path = tmp_path / "proxy.db"
    with Ledger(f"sqlite:///{path}") as ledger:
        ledger.append([
            LedgerRow("p1", "proxy", "proxy", "chat", LLM_CALL, at(1), model="gpt-4o-mini",
                      tokens_in=10, tokens_out=5, cost_nusd=7_500, decision="priced"),
            LedgerRow("p2", "proxy", "proxy", "chat", LLM_CALL, at(1), model="my-private-llm",
                      tokens_in=10, tokens_out=5, cost_nusd=0, decision="unpriced"),
            LedgerRow("p3", "proxy", "proxy", "chat", LLM_CALL, at(1), model="gpt-4o-mini",
                      cost_nusd=0, decision="no_usage"),
            # a workflow's route to a branch named like it: priced, not unknown
            LedgerRow("w1", "steps[0]", "desk", "route", "route", at(1), cost_nusd=3,
                      decision="no_usage"),
        ])  # fmt: skip
        report = spend_report(ledger, by="model")
    assert report.total.unknown_cost == 2 and report.total.cost == Decimal("0.000007503")
    assert {r.key: r.unknown_cost for r in report.rows} == {
        "gpt-4o-mini": 1,
        "my-private-llm": 1,
        "(no model: routes, templates)": 0,
    }
    assert report.to_dict()["total"]["unknown_cost_steps"] == 2
    result = CliRunner().invoke(app, ["cost", "report", "--ledger", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning: 2 recorded LLM calls were of unknown cost" in " ".join(result.output.split())
    # the HTML page, mailed to whoever pays, says so too (it showed the total as if complete)
    page = tmp_path / "spend.html"
    result = CliRunner().invoke(app, ["cost", "report", "--ledger", str(path), "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert "2 recorded LLM calls were of unknown cost" in page.read_text()


def test_an_html_path_under_a_file_is_refused_before_the_report(ledger_file, tmp_path):
    (tmp_path / "notes").write_text("mine\n")
    res = cli(
        "cost", "report", "--ledger", str(ledger_file), "--html", str(tmp_path / "notes/r.html")
    )
    assert res.exit_code == 2 and "is a file, not a folder" in res.stderr
    assert (tmp_path / "notes").read_text() == "mine\n"
