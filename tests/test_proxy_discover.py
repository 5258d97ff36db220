"""``slmstack discover``: recorded calls grouped into tasks by template, each with its kind."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import replace

from typer.testing import CliRunner

from proxy_doubles import FakeUpstream, client, make_proxy
from proxy_traffic import INTENTS, synthetic_traffic
from slmstack.cli.app import app
from slmstack.proxy import TrafficStore
from slmstack.proxy.answers import infer_kind
from slmstack.proxy.discover import discover


def _by_source(tasks, source):
    """Each task's sources; a task is pure when it holds one."""
    return [Counter(source[r] for r in t.request_ids) for t in tasks]


def test_finds_each_template_with_no_false_merge_and_no_split():
    rows, source = synthetic_traffic()
    tasks = discover(rows)
    mixes = _by_source(tasks, source)
    assert all(len(m) == 1 for m in mixes), f"a task mixes templates: {mixes}"
    found = {next(iter(m)): t for m, t in zip(mixes, tasks, strict=True)}
    assert len(found) == len(tasks) == 5, [(t.kind, t.requests, t.template[:60]) for t in tasks]
    total = Counter(source.values())
    assert {name: t.requests for name, t in found.items()} == dict(total)

    banking, sroie = found["banking"], found["sroie"]
    assert banking.kind == "classification" and set(banking.labels) == set(INTENTS)
    assert banking.prefix.startswith("Classify this banking query") and banking.prefix.endswith(
        "Query: "
    )
    assert banking.suffix == "\nIntent:"
    assert sroie.kind == "extraction" and sroie.schema == ("address", "company", "date", "total")
    assert sroie.prefix.endswith("Receipt:\n")
    assert found["sentiment"].kind == "classification"
    assert set(found["sentiment"].labels) == {"positive", "negative"}
    assert found["summary"].kind == "generation" and found["chat"].kind == "generation"
    assert found["chat"].system == "You are a friendly companion."
    members = {r.request_id: r for r in rows}
    for task in tasks:
        assert task.spend_nusd == sum(members[r].cost_nusd for r in task.request_ids) > 0
        assert task.unpriced == 0 and task.models == ("gpt-4o",)


def test_order_of_arrival_does_not_change_the_tasks():
    rows, _ = synthetic_traffic()
    first = {t.task_id: t.requests for t in discover(rows)}
    assert {t.task_id: t.requests for t in discover(rows[::-1])} == first


def test_unpriced_and_failed_calls_are_counted_apart():
    rows, _ = synthetic_traffic()
    rows[0] = replace(rows[0], cost_status="unpriced", cost_nusd=0)
    rows[1] = replace(rows[1], status=429)
    rows[2] = replace(rows[2], problem="stream cut short", response="card_arr")  # no answer
    tasks = discover(rows)
    assert sum(t.requests for t in tasks) == len(rows) - 2
    assert sum(t.unpriced for t in tasks) == 1


def test_kinds_from_answers():
    assert infer_kind(['{"a": 1, "b": 2}'] * 9 + ["oops"]).kind == "extraction"
    assert infer_kind([json.dumps({f"k{i}": 1}) for i in range(10)]).kind == "generation"
    assert infer_kind(["yes", "no", "Yes.", "no"] * 3).labels == ("yes", "no")
    # Few answers, all distinct, but each is an intent the prompt lists.
    listed = infer_kind(
        ["card_arrival", "pin_blocked", "change_pin"],
        "intents: card_arrival, pin_blocked, change_pin",
    )
    assert listed.kind == "classification"
    assert infer_kind(["a long answer that explains many things at once"] * 4).kind == "generation"


def test_discover_cli_on_traffic_recorded_by_the_proxy(tmp_path):
    upstream = FakeUpstream(
        lambda text: "card_arrival" if "Query:" in text else '{"total": "1.00"}'
    )

    async def main():
        async with make_proxy(tmp_path, upstream) as proxy, client(proxy) as http:
            for i in range(12):
                for user in (
                    f"Classify: card_arrival, pin_blocked.\nQuery: where is card {i}\nIntent:",
                    f"Extract the total as JSON.\nReceipt:\nSHOP {i}\nTOTAL {i}.00",
                ):
                    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": user}]}
                    await http.post("/v1/chat/completions", json=body)
            assert proxy.recorder.wait_idle()

    asyncio.run(main())
    db = tmp_path / "proxy.db"
    assert len(TrafficStore(f"sqlite:///{db}").rows()) == 24
    result = CliRunner().invoke(app, ["discover", "--ledger", str(db), "--json"])
    assert result.exit_code == 0, result.output
    tasks = json.loads(result.output)["tasks"]
    assert sorted((t["kind"], t["requests"]) for t in tasks) == [
        ("classification", 12),
        ("extraction", 12),
    ]
    assert all(float(t["spend_usd"]) > 0 for t in tasks)
    table = CliRunner().invoke(app, ["discover", "--ledger", str(db)])
    assert table.exit_code == 0 and "extraction" in table.output
    missing = CliRunner().invoke(app, ["discover", "--ledger", str(tmp_path / "nope.db")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
