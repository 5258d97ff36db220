"""The break-even report: exact per-request costs, the measured escalation rate, break-even."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from slmstack.costs import load_prices
from slmstack.costs.compare import break_even
from slmstack.costs.ledger import RUN, LedgerRow
from slmstack.errors import DataError

AT = datetime(2026, 12, 1, tzinfo=UTC)


def rows(n_runs: int, escalated: int, cost_nusd: int, text_tokens: int) -> list[LedgerRow]:
    out = []
    for i in range(n_runs):
        rid = f"r{i}"
        out.append(LedgerRow(rid, "steps[0]", "desk", "intent", "skill", AT,
                             tokens_in=text_tokens, cost_nusd=cost_nusd))  # fmt: skip
        out.append(LedgerRow(rid, "", "desk", "", RUN, AT, tokens_in=text_tokens,
                             cost_nusd=cost_nusd,
                             decision="escalated" if i < escalated else "completed"))  # fmt: skip
    return out


def test_break_even_figures_are_exact():
    prices = load_prices()
    r = break_even(rows(10, 2, 1_000, 20), workflow="desk", prices=prices, llm="gpt-4",
                   requests_per_day=1_000, training=Decimal("3.00"))  # fmt: skip
    # 20 text tokens + 150 overhead in, 50 out, at $0.03 / $0.06 per 1k
    assert r.llm_per_request == Decimal("0.0081")
    assert r.stack_per_request == Decimal("0.000001")
    assert r.escalation_rate == 0.2
    assert r.llm_monthly == Decimal("0.0081") * 1_000 * 30
    assert r.break_even_requests == 371  # ceil(3.00 / 0.008099)
    assert r.times_cheaper == Decimal(8100)


@pytest.mark.parametrize(
    ("training", "expected"),
    [("0", 1), ("0.008099", 2), ("0.0080990001", 2), ("0.016198", 3)],
)
def test_break_even_is_the_first_request_after_which_the_stack_has_cost_less(training, expected):
    """No training to recover: cheaper from the first request (it said 'after 0 requests');
    training of exactly one request's saving: the costs tie after one, so two."""
    r = break_even(rows(10, 2, 1_000, 20), workflow="desk", prices=load_prices(), llm="gpt-4",
                   requests_per_day=1_000, training=Decimal(training))  # fmt: skip
    n = r.break_even_requests
    assert n == expected
    assert r.training + n * r.stack_per_request < n * r.llm_per_request
    assert r.training + (n - 1) * r.stack_per_request >= (n - 1) * r.llm_per_request


def test_a_stack_dearer_than_the_llm_never_breaks_even():
    r = break_even(rows(3, 0, 10**9, 5), workflow="desk", prices=load_prices(), llm="gpt-4",
                   requests_per_day=10, training=Decimal(1))  # fmt: skip
    assert r.break_even_requests is None


def test_no_runs_of_the_workflow_is_an_error():
    with pytest.raises(DataError, match="no runs of workflow 'other'"):
        break_even(rows(3, 0, 1, 5), workflow="other", prices=load_prices(), llm="gpt-4",
                   requests_per_day=10, training=Decimal(0))  # fmt: skip


def test_runs_without_steps_and_other_workflows_do_not_count():
    empty = [LedgerRow(f"e{i}", "", "desk", "", RUN, AT, decision="escalated") for i in range(3)]
    other = [LedgerRow("r0", "", "billing", "", RUN, AT, cost_nusd=10**9, decision="escalated")]
    r = break_even(rows(2, 1, 1_000, 20) + empty + other, workflow="desk", prices=load_prices(),
                   llm="gpt-4", requests_per_day=10, training=Decimal(0))  # fmt: skip
    assert (r.runs, r.escalation_rate, r.stack_per_request) == (2, 0.5, Decimal("0.000001"))


def test_times_are_said_both_ways():
    from slmstack.costs.report import times

    assert times(Decimal(8100)) == "8,100× cheaper"
    assert times(Decimal("1.44")) == "1.4× cheaper"
    assert times(Decimal("0.005")) == "200× dearer"  # not "0×"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--teacher-cost", "abc", "--teacher-cost must be a number of dollars, 0 or more"),
        ("--teacher-cost", "NaN", "--teacher-cost must be a number"),
        ("--teacher-cost", "-5", "--teacher-cost must be a number"),
        ("--prompt-tokens", "-1000", "--prompt-tokens"),
    ],
)
def test_bad_numbers_are_refused_by_flag(tmp_path, flag, value, message):
    from typer.testing import CliRunner

    from slmstack.cli.app import app

    wf = tmp_path / "desk.yaml"
    wf.write_text("steps: [{template: hi}]\nledger: sqlite:///ledger.db\n")
    res = CliRunner().invoke(
        app, ["cost", "compare", str(wf), "--requests-per-day", "10", flag, value]
    )
    assert res.exit_code != 0
    assert message in " ".join(res.output.split())


def test_the_summary_page_and_text_agree_with_the_exact_figures(capsys):
    """A dearer stack never breaks even (the page said "after None"); a ratio below 1 is
    not rounded to "0.0"; a stack costing a fraction of a nano-dollar does not cost nothing."""
    from slmstack.cli.cost_compare import _page, _print, _summary
    from slmstack.costs.compare import BreakEven

    dear = BreakEven("desk", 3, 0.0, "gpt-4o-mini", 150, 50, Decimal("0.0000525"),
                     Decimal("0.01"), Decimal(2), 100)  # fmt: skip
    s = _summary(dear, 0.0, "cpu-2vcpu", "p")
    assert s["break_even_requests"] is None and s["times_cheaper"] == "0.00525"
    assert "never" in _page(dear, s) and "None" not in _page(dear, s)
    cheap = BreakEven("desk", 3, 0.0, "gpt-4", 150, 50, Decimal("0.0075"),
                      Decimal(1) / 3 * Decimal("1e-9"), Decimal(0), 100)  # fmt: skip
    _print(_summary(cheap, 0.0, "cpu-2vcpu", "p"))
    text = " ".join(capsys.readouterr().out.split())
    assert "costs nothing" not in text and "22,500,000× cheaper per request" in text


def test_training_is_priced_on_the_machine_it_ran_on(tmp_path, monkeypatch):
    """Training on a GPU box and serving on a small VM: --training-machine prices the
    training seconds at the GPU's rate; by default the serving machine's, and it says which."""
    import json

    from typer.testing import CliRunner

    from fixtures import TRAIN
    from serve_doubles import Keywords
    from slmstack.cli.app import app
    from slmstack.workflows import load_workflow

    Keywords().fit(TRAIN).save(tmp_path / "intent")
    config = tmp_path / "intent" / "config.json"
    saved = json.loads(config.read_text())
    saved["provenance"]["seconds"] = 3600.0  # an hour of training
    config.write_text(json.dumps(saved))
    wf = tmp_path / "desk.yaml"
    wf.write_text(
        "skills: {intent: intent}\nsteps: [{skill: intent}]\nledger: sqlite:///ledger.db\n"
    )
    with load_workflow(wf) as flow:
        flow.run("my card has not arrived")

    def training(*extra: str) -> dict:
        args = ["cost", "compare", str(wf), "--requests-per-day", "10", "--json", *extra]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        return json.loads(res.output)["training"]

    from slmstack.workflows.engine import Workflow

    closed: list[Workflow] = []
    real_close = Workflow.close
    monkeypatch.setattr(Workflow, "close", lambda self: (closed.append(self), real_close(self)))
    default = training()
    assert closed, "cost compare closes the workflow it loaded"
    assert (default["machine"], Decimal(default["usd"])) == ("cpu-2vcpu", Decimal("0.08925"))
    gpu = training("--training-machine", "gpu-a10g")
    assert (gpu["machine"], Decimal(gpu["usd"])) == ("gpu-a10g", Decimal("1.006"))
    res = CliRunner().invoke(
        app,
        ["cost", "compare", str(wf), "--requests-per-day", "10", "--training-machine", "gpu-a10"],
    )
    assert res.exit_code != 0 and "'gpu-a10' has no price" in " ".join(res.output.split())


def test_break_even_after_one_request_is_said_in_the_singular():
    from slmstack.cli.cost_compare import _when

    assert _when({"break_even_requests": 1, "break_even_days": 1}) == (
        "after 1 request (1 day at this volume)"
    )
    assert _when({"break_even_requests": 2500, "break_even_days": 3}) == (
        "after 2,500 requests (3 days at this volume)"
    )
    # no training to recover at 10,000 a day: not "(0.0 days at this volume)"
    assert _when({"break_even_requests": 1, "break_even_days": 0.0}) == (
        "after 1 request (within the first day at this volume)"
    )
    assert _when({"break_even_requests": 5000, "break_even_days": 0.5}) == (
        "after 5,000 requests (0.5 days at this volume)"
    )


def test_compare_reads_the_workflow_ledger_and_never_creates_it(tmp_path):
    """It opened the workflow's ledger as a writer: a workflow never run got an empty
    ledger (and its folder) made by a command that only reads."""
    from typer.testing import CliRunner

    from slmstack.cli.app import app

    wf = tmp_path / "desk.yaml"
    wf.write_text("name: desk\nledger: sqlite:///books/ledger.db\nsteps: [{template: hi}]\n")
    res = CliRunner().invoke(app, ["cost", "compare", str(wf), "--requests-per-day", "10"])
    assert res.exit_code != 0
    assert f"{tmp_path / 'books' / 'ledger.db'} does not exist" in " ".join(res.output.split())
    assert not (tmp_path / "books").exists()
