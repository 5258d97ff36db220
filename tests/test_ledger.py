"""The cost ledger, on SQLite and PostgreSQL: exact money, idempotent ids, batched writes."""

from __future__ import annotations

import gc
import random
import threading
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext
from pathlib import Path

import pytest

from databases import db_url  # noqa: F401  (SQLite and PostgreSQL)
from fakes import FakeBackend
from slmstack.backends import Completion
from slmstack.costs import Ledger, LedgerRow, load_prices, to_nano
from slmstack.errors import ConfigError
from slmstack.types import Usage
from slmstack.workflows import CascadeStep, EscalateStep, SkillStep, Workflow, load_workflow
from workflow_doubles import KeywordClassifier

AT = datetime(2025, 5, 2, 9, 30, tzinfo=UTC)


class RemoteFake(FakeBackend):
    """A scripted backend that looks like a remote API (it has a base_url): priced per token."""

    def __init__(self, model: str):
        super().__init__(["Here is what to do."], name=model)
        self.base_url = "https://api.example.invalid/v1"


@pytest.fixture(autouse=True)
def _no_env_prices(monkeypatch):
    monkeypatch.delenv("SLMSTACK_PRICES", raising=False)


def row(request_id: str, path: str, cost_nusd: int = 1, at: datetime = AT, **kw) -> LedgerRow:
    return LedgerRow(request_id, path, "desk", path or "", "skill", at, cost_nusd=cost_nusd, **kw)


# ---------------------------------------------------------------- money is exact

PRICES = {
    "models": {
        "a": {"input_per_1k": "0.03", "output_per_1k": "0.06"},
        "b": {"input_per_1k": "0.00015", "output_per_1k": "0.0006"},
        "c": {"input_per_1k": "0.0000375", "output_per_1k": "0.00015"},  # not whole nano-dollars
        "d": {"input_per_1k": "0.0025", "output_per_1k": "0.01"},
    },
    "machines": {"cpu": {"per_hour": "0.08925"}, "gpu": {"per_hour": "4.096575"}},
}


def test_10k_requests_with_mixed_prices_are_exact_to_the_cent(db_url):  # noqa: F811
    table = load_prices(PRICES)
    rnd = random.Random(12)
    exact: dict[str, Decimal] = {}
    rows = 0
    with Ledger(db_url) as ledger, localcontext() as ctx:
        ctx.prec = 60
        for i in range(10_000):
            steps = []
            for j in range(rnd.randint(1, 3)):
                if rnd.random() < 0.6:
                    model, t_in, t_out = (
                        rnd.choice("abcd"),
                        rnd.randint(1, 4000),
                        rnd.randint(0, 800),
                    )
                    price = PRICES["models"][model]
                    cost = (
                        t_in * Decimal(price["input_per_1k"])
                        + t_out * Decimal(price["output_per_1k"])
                    ) / 1000
                    nano = to_nano(table.token_cost(model, t_in, t_out))
                    steps.append(
                        row(f"r{i}", f"s{j}", nano, model=model, tokens_in=t_in, tokens_out=t_out)
                    )
                else:
                    model, seconds = rnd.choice(["cpu", "gpu"]), rnd.uniform(0.0005, 2.0)
                    cost = Decimal(seconds) * Decimal(PRICES["machines"][model]["per_hour"]) / 3600
                    nano = to_nano(table.compute_cost(model, seconds))
                    steps.append(row(f"r{i}", f"s{j}", nano, model=model, compute_s=seconds))
                exact[model] = exact.get(model, Decimal(0)) + cost
            rows += len(steps)
            run = LedgerRow(
                f"r{i}", "", "desk", "", "run", AT, cost_nusd=sum(s.cost_nusd for s in steps)
            )
            ledger.append([*steps, run])
        total = ledger.total()
        by_model = {s.key: s.cost for s in ledger.spend("model")}
    want = sum(exact.values(), Decimal(0))
    cent = Decimal("0.01")
    assert (total.requests, total.steps) == (10_000, rows)  # run rows are not counted twice
    assert total.cost.quantize(cent) == want.quantize(cent)
    assert abs(total.cost - want) <= rows * Decimal("0.5e-9")  # one rounding per row, at most
    assert total.cost > 100  # a real sum, not an empty ledger
    for model, cost in exact.items():
        assert by_model[model].quantize(cent) == cost.quantize(cent), model


# ---------------------------------------------------------------- idempotent, batched


def test_the_same_request_and_step_is_stored_once(db_url):  # noqa: F811
    with Ledger(db_url) as ledger:
        ledger.append([row("r1", "a", 5), row("r1", "a", 7), row("r1", "b", 1)])
        ledger.flush()
        ledger.append([row("r1", "a", 9), row("r2", "a", 2)])  # r1/a again, after a flush
        stored = [(r.request_id, r.path, r.cost_nusd) for r in ledger.rows()]
    assert stored == [("r1", "a", 5), ("r1", "b", 1), ("r2", "a", 2)]  # the first write wins


def test_a_time_in_another_zone_is_stored_as_the_same_instant_in_utc(db_url, monkeypatch):  # noqa: F811
    """SQLite keeps a time's wall clock and drops its zone: 23:30 at UTC-5 read back as 23:30 UTC.

    PostgreSQL gives a time back in its session's zone (a server set to Tokyo time): rows()
    gives it in UTC, so a reader's ``at.date()`` is the UTC day the report groups by.
    """
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")  # a naive time is UTC, as rows() reads it back
    monkeypatch.setenv("PGTZ", "Asia/Tokyo")  # the PostgreSQL session's zone
    time.tzset()
    try:
        east = datetime(2025, 5, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
        naive = datetime(2025, 5, 1, 2, 0)  # Tokyo time would put it on 04-30
        with Ledger(db_url) as ledger:
            ledger.append([row("r1", "a", at=east), row("r2", "a", at=naive)])
            stored = {r.request_id: r.at for r in ledger.rows()}
            days = [s.key for s in ledger.spend("day")]
    finally:
        monkeypatch.undo()
        time.tzset()
    assert stored["r1"] == east and stored["r1"].utcoffset() == timedelta(0)
    assert stored["r2"] == naive.replace(tzinfo=UTC) and stored["r2"].utcoffset() == timedelta(0)
    assert [stored[r].date().isoformat() for r in ("r2", "r1")] == days
    assert days == ["2025-05-01", "2025-05-02"]  # r2 on its UTC day, r1 on 04:30 UTC the next


def test_rows_wait_in_a_buffer_until_it_is_full_flushed_or_dropped(db_url):  # noqa: F811
    writer = Ledger(db_url, batch_size=3, flush_every_s=3600)
    reader = Ledger(db_url, create=False)
    writer.append([row("r1", "a"), row("r1", "b")])
    assert reader.total().steps == 0
    writer.append([row("r1", "c")])  # the third row fills the batch
    assert reader.total().steps == 3
    writer.append([row("r2", "a")])
    assert writer.flush() == 1 and reader.total().steps == 4
    writer.append([row("r3", "a")])
    del writer  # dropped with a row buffered (or at exit): the row is still written
    gc.collect()
    assert reader.total().steps == 5
    stale = Ledger(db_url, batch_size=100, flush_every_s=0.0)
    stale.append([row("r4", "a")])  # older than flush_every_s: written at once
    assert reader.total().steps == 6
    stale.close()
    reader.close()


def _a_row_whose_table_is_gone(tmp_path):
    """A ledger with one buffered row, its table dropped behind its back; and the engine."""
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url, batch_size=100)
    ledger.append([row("r1", "a")])
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE slmstack_ledger"))
    return url, ledger, engine


def test_a_failed_write_keeps_the_rows_and_says_so(tmp_path):
    url, ledger, engine = _a_row_whose_table_is_gone(tmp_path)
    with pytest.raises(ConfigError, match=r"cannot write 1 rows to the ledger .*stay buffered"):
        ledger.flush()
    Ledger(url).close()  # the table is back
    assert ledger.flush() == 1 and [r.path for r in ledger.rows()] == ["a"]
    ledger.close()
    engine.dispose()


def test_rows_that_cannot_be_written_at_drop_are_logged_and_close_raises(tmp_path, caplog):
    import logging

    _, ledger, engine = _a_row_whose_table_is_gone(tmp_path)
    with pytest.raises(ConfigError, match=r"cannot write 1 rows"):
        ledger.close()  # the caller hears of it, and the row stays buffered
    with caplog.at_level(logging.ERROR, logger="slmstack.costs.ledger"):
        del ledger
        gc.collect()  # dropped: the finalizer tries once more, and logs instead of raising
    assert any("cannot write 1 rows" in r.getMessage() for r in caplog.records)
    engine.dispose()


def _blocked_writes(ledger, fail: bool = False):
    """Hold each INSERT until ``release`` is set (then fail it when ``fail``); and undo."""
    import sqlite3

    import sqlalchemy as sa

    entered, release = threading.Event(), threading.Event()

    def hold(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT"):
            entered.set()
            assert release.wait(10)
            if fail:
                raise sqlite3.OperationalError("disk I/O error (from the test)")

    sa.event.listen(ledger._engine, "before_cursor_execute", hold)
    return entered, release, lambda: sa.event.remove(ledger._engine, "before_cursor_execute", hold)


def test_an_append_never_waits_for_a_write_in_progress(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", batch_size=100)
    ledger.append([row("r1", "a")])
    entered, release, _ = _blocked_writes(ledger)
    writer = threading.Thread(target=ledger.flush)
    writer.start()
    assert entered.wait(10)  # the write holds the database now
    appender = threading.Thread(target=ledger.append, args=([row("r2", "a")],))
    appender.start()
    appender.join(2)
    returned = not appender.is_alive()  # while the write is still held
    release.set()
    writer.join(10)
    assert returned
    assert ledger.flush() == 1  # the row that came during the write, after it
    assert [r.request_id for r in ledger.rows()] == ["r1", "r2"]
    ledger.close()


def test_rows_of_a_failed_write_go_back_ahead_of_newer_ones(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", batch_size=100)
    ledger.append([row("r1", "a", 5)])
    entered, release, undo = _blocked_writes(ledger, fail=True)
    failures = []

    def flush():
        try:
            ledger.flush()
        except ConfigError as exc:
            failures.append(str(exc))

    writer = threading.Thread(target=flush)
    writer.start()
    assert entered.wait(10)
    ledger.append([row("r1", "a", 9), row("r2", "a", 2)])  # r1/a again, while it is taken
    release.set()
    writer.join(10)
    assert failures and "cannot write 1 rows" in failures[0]
    undo()
    assert ledger.flush() == 2
    stored = [(r.request_id, r.cost_nusd) for r in ledger.rows()]
    assert stored == [("r1", 5), ("r2", 2)]  # the first write of r1/a still wins
    ledger.close()


def test_readers_never_create_a_ledger(tmp_path):
    with pytest.raises(ConfigError, match=r"ledger .*nope.db does not exist"):
        Ledger(f"sqlite:///{tmp_path / 'nope.db'}", create=False)
    assert not (tmp_path / "nope.db").exists()
    import sqlite3

    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("create table users (id integer)")
    with pytest.raises(ConfigError, match="not an slmstack ledger"):
        Ledger(f"sqlite:///{other}", create=False)
    with sqlite3.connect(other) as conn:  # a reader left the other app's file as it was
        assert conn.execute("pragma journal_mode").fetchone()[0] == "delete"
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(ConfigError, match="empty.db is empty"):
        Ledger(f"sqlite:///{tmp_path / 'empty.db'}", create=False)
    assert (tmp_path / "empty.db").stat().st_size == 0
    with pytest.raises(ConfigError, match="is not a database URL"):
        Ledger("not a url")
    with pytest.raises(ConfigError, match="SQLite or PostgreSQL; mysql://u@h/db is mysql"):
        Ledger("mysql://u@h/db")  # said before asking for a driver it would not use


def test_a_sqlite_url_with_options_is_read_as_it_was_written(tmp_path):
    """A reader took `?timeout=30` for part of the file name and said the ledger did not exist."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}?timeout=30"
    with Ledger(url) as ledger:
        ledger.append([row("r1", "a")])
    with Ledger(url, create=False) as reader:
        assert [r.request_id for r in reader.rows()] == ["r1"]
    with pytest.raises(ConfigError, match=r"nope.db does not exist"):
        Ledger(f"sqlite:///{tmp_path / 'nope.db'}?timeout=30", create=False)


def test_two_workflows_given_the_same_key_keep_their_own_rows(db_url):  # noqa: F811
    with Ledger(db_url) as ledger:
        for workflow in ("desk", "billing"):
            ledger.append([
                LedgerRow("ticket-1", "steps[0]", workflow, "intent", "skill", AT, cost_nusd=3),
                LedgerRow("ticket-1", "", workflow, "", "run", AT, cost_nusd=3),
            ])  # fmt: skip
        ledger.flush()
        stored = sorted((r.workflow, r.path) for r in ledger.rows())
        total = ledger.total()
    assert stored == [("billing", ""), ("billing", "steps[0]"), ("desk", ""), ("desk", "steps[0]")]
    assert (total.requests, total.steps, total.cost_nusd) == (2, 2, 6)


def test_a_ledger_made_before_the_workflow_key_is_migrated_keeping_every_row(db_url, caplog):  # noqa: F811
    """Its (request_id, path) key refused a second workflow's rows, and every later write."""
    import sqlalchemy as sa

    from slmstack.costs import ledger as module
    from slmstack.costs._ledger_migrate import OLD_UNIQUE

    old = module._define(sa.MetaData())
    old.indexes = {i for i in old.indexes if i.name != module._UNIQUE}  # as made before
    old.append_constraint(sa.UniqueConstraint("request_id", "path", name=OLD_UNIQUE))
    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(db_url)
    old.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(old.insert(), [
            {"request_id": f"t-{i}", "path": "", "workflow": "desk", "step": "", "kind": "run",
             "at": AT, "day": AT.date(), "model": "m", "tokens_in": i, "tokens_out": 1,
             "latency_ms": 1.0, "compute_s": 0.5, "cost_nusd": 10 + i, "reason": f"r{i}"}
            for i in range(3)
        ])  # fmt: skip
    with caplog.at_level("WARNING"), Ledger(db_url) as ledger:
        ledger.append([LedgerRow("t-1", "", "billing", "", "run", AT, cost_nusd=7),
                       LedgerRow("t-1", "", "desk", "", "run", AT, cost_nusd=99)])  # fmt: skip
        ledger.flush()
        rows = sorted((r.workflow, r.request_id, r.cost_nusd, r.reason) for r in ledger.rows())
    assert rows == [("billing", "t-1", 7, None), ("desk", "t-0", 10, "r0"),
                    ("desk", "t-1", 11, "r1"), ("desk", "t-2", 12, "r2")]  # fmt: skip
    assert "no longer per (request_id, path); every row kept" in caplog.text
    names = {c["name"] for c in sa.inspect(engine).get_unique_constraints(module._TABLE)}
    assert OLD_UNIQUE not in names
    indexes = {i["name"] for i in sa.inspect(engine).get_indexes(module._TABLE)}
    assert {module._UNIQUE, "ix_slmstack_ledger_day"} <= indexes
    with engine.connect() as conn:  # ids kept: new rows go after the old ones
        ids = conn.execute(sa.text(f"SELECT id FROM {module._TABLE} ORDER BY id")).scalars().all()
    assert ids == [1, 2, 3, 4]
    caplog.clear()
    with caplog.at_level("WARNING"):
        Ledger(db_url).close()  # a current ledger is left as it is
    assert "no longer per" not in caplog.text
    if engine.dialect.name == "sqlite":  # a second writer that waited finds it done
        from slmstack.costs._ledger_migrate import _rebuild_sqlite

        assert _rebuild_sqlite(engine, module._define(sa.MetaData())) is False
    engine.dispose()


def test_a_row_the_driver_cannot_take_does_not_lose_the_others(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}", batch_size=100)
    ledger.append([row("ok", "a", 5), row("big", "a", 2**63)])  # past a 64-bit integer
    with pytest.raises(OverflowError):
        ledger.flush()
    assert ledger._buffer.rows, "the rows of the failed write are back in the buffer"
    ledger._buffer.rows.pop(("desk", "big", "a"))
    ledger.flush()
    assert [r.request_id for r in ledger.rows()] == ["ok"]


# ---------------------------------------------------------------- workflow runs


def desk(ledger, prices=None):
    return Workflow(
        [CascadeStep([SkillStep("intent"), EscalateStep("hard", to="big")], threshold=0.8)],
        skills={"intent": KeywordClassifier({"refund": 0.9})},
        backends={"big": RemoteFake("big-llm")},
        name="desk",
        ledger=ledger,
        prices=prices or {"models": {"big-llm": {"input_per_1k": "0.01", "output_per_1k": "0.03"}}},
    )


def test_each_run_appends_its_steps_and_itself_with_their_costs(db_url):  # noqa: F811
    wf = desk(Ledger(db_url))
    plain = desk(None)
    for text in ("refund please", "something odd"):
        with_ledger, without = wf.run(text, key=text), plain.run(text, key=text)
        assert (with_ledger.route, with_ledger.answer, with_ledger.status) == (
            without.route, without.answer, without.status
        )  # fmt: skip
    ledger = wf.ledger
    assert ledger is not None
    skill, llm, run = ledger.rows(request_id="something odd")
    assert (skill.kind, skill.model, skill.machine, skill.decision) == (
        "skill",
        "intent",
        "cpu-2vcpu",
        "next",
    )
    assert skill.reason == "intent confidence 0.200 < threshold 0.8"
    assert skill.tokens_in == 3 and skill.compute_s > 0
    assert skill.cost_nusd == to_nano(load_prices().compute_cost("cpu-2vcpu", skill.compute_s))
    assert (llm.kind, llm.model, llm.machine, llm.decision) == ("escalate", "big-llm", None, "big")
    assert (llm.tokens_in, llm.tokens_out) == (2, 5)  # the fake counts words
    assert llm.cost == (2 * Decimal("0.01") + 5 * Decimal("0.03")) / 1000
    assert (run.kind, run.path, run.decision) == ("run", "", "escalated")
    assert run.cost_nusd == skill.cost_nusd + llm.cost_nusd and run.tokens_in == 5
    assert run.reason is not None and run.reason.startswith("hard: intent confidence")
    accepted = ledger.rows(request_id="refund please")
    assert [(r.kind, r.decision) for r in accepted] == [("skill", "accept"), ("run", "completed")]
    wf.run("something odd", key="something odd")  # a resumed batch: the same request again
    assert len(ledger.rows()) == 5
    wf.run("something odd")  # no key: a new request id
    assert len(ledger.rows()) == 8
    ledger.close()


def test_a_block_used_twice_keeps_both_of_its_rows(tmp_path):
    from slmstack.workflows import BlockStep, TemplateStep

    wf = Workflow(
        [BlockStep("tag"), BlockStep("tag", id="again"), TemplateStep("done")],
        skills={"intent": KeywordClassifier({"refund": 0.9})},
        blocks={"tag": [SkillStep("intent")]},
        ledger=f"sqlite:///{tmp_path / 'l.db'}",
    )
    wf.run("refund please", key="r1")
    ledger = wf.ledger
    assert ledger is not None
    rows = ledger.rows(request_id="r1")
    steps, run = rows[:-1], rows[-1]
    assert [r.path for r in steps if r.kind == "skill"] == ["blocks.tag[0]", "blocks.tag[0]#2"]
    assert run.cost_nusd == sum(r.cost_nusd for r in steps)
    assert run.tokens_in == sum(r.tokens_in for r in steps)
    ledger.close()


def test_a_workflow_file_keeps_its_ledger_next_to_it(tmp_path, monkeypatch):
    flows = tmp_path / "flows"
    flows.mkdir()
    wf = flows / "desk.yaml"
    wf.write_text(
        "name: desk\nledger: sqlite:///books/ledger.db\nmachine: gpu-l4\nsteps: [intent]\n"
    )
    monkeypatch.chdir(tmp_path)
    workflow = load_workflow(wf, skills={"intent": KeywordClassifier({"refund": 0.9})})
    workflow.run("refund please", key="k1")
    assert workflow.ledger is not None
    workflow.ledger.close()
    with Ledger(f"sqlite:///{flows / 'books' / 'ledger.db'}", create=False) as reader:
        assert [(r.step, r.machine) for r in reader.rows()] == [("intent", "gpu-l4"), ("", None)]


def test_a_skill_calling_a_paid_api_is_priced_per_token(db_url):  # noqa: F811
    class LLMSkill(KeywordClassifier):
        backend_ = RemoteFake("acme-3")  # as LLMClassifier holds its backend

    prices = {"models": {"acme-3": {"input_per_1k": "0.5", "output_per_1k": "1"}}}
    wf = Workflow(
        [SkillStep("intent")], skills={"intent": LLMSkill({"refund": 0.9})}, name="desk",
        ledger=db_url, prices=prices,
    )  # fmt: skip
    wf.run("refund please", key="k")
    assert wf.ledger is not None
    step, run = wf.ledger.rows()
    assert (step.model, step.machine, step.compute_s) == ("acme-3", None, 0.0)
    assert step.cost == 3 * Decimal("0.5") / 1000 == run.cost  # 3 input tokens
    wf.ledger.close()


def test_a_backend_without_base_url_whose_model_is_priced_is_not_costed_as_local_time(tmp_path):
    """A plug-in runtime's client (no base_url) must have a price in a workflow file, and
    then was costed as wall time on the CPU: $0.14 of API tokens recorded as 1 nano-dollar."""
    prices = {"models": {"acme-big": {"input_per_1k": "10", "output_per_1k": "30"}}}
    wf = Workflow(
        [EscalateStep("always", to="big")], skills={},
        backends={"big": FakeBackend(["three word answer"], name="acme-big")},
        name="desk", ledger=f"sqlite:///{tmp_path / 'l.db'}", prices=prices,
    )  # fmt: skip
    wf.run("please answer this question now", key="k")
    assert wf.ledger is not None
    step, run = wf.ledger.rows()
    assert (step.model, step.machine, step.tokens_in, step.tokens_out) == ("acme-big", None, 5, 3)
    assert step.cost == (5 * Decimal(10) + 3 * Decimal(30)) / 1000 == run.cost
    wf.ledger.close()
    local = Workflow(
        [EscalateStep("always", to="small")], skills={},
        backends={"small": FakeBackend(["ok"], name="my-gguf")},  # not in the table: local
        ledger=f"sqlite:///{tmp_path / 'm.db'}",
    )  # fmt: skip
    local.run("hi", key="k")
    assert local.ledger is not None
    assert local.ledger.rows()[0].machine == "cpu-2vcpu"
    local.ledger.close()


def test_rows_appended_after_close_are_written_not_left_in_a_dead_buffer(tmp_path):
    """A run that ends while its server shuts down appends after the ledger closed: those
    rows sat in a buffer whose exit-time write close had cancelled, and were lost."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url, batch_size=100, flush_every_s=60)
    ledger.append([row("a", "")])
    ledger.close()
    ledger.append([row("b", "")])
    assert ledger.pending == 0
    del ledger
    gc.collect()
    assert sorted(r.request_id for r in Ledger(url, create=False).rows()) == ["a", "b"]


def _failed_over(model: str, text: str, tokens: tuple[int, int]) -> Completion:
    return Completion(
        text, model, Usage(*tokens), endpoint="https://backup.example.invalid/v1",
        failed_over=("dear-llm at https://api.example.invalid/v1 answered HTTP 503 (3 attempts)",),
    )  # fmt: skip


@pytest.mark.parametrize("fallback_price", ["0.1", "90"])  # a cheaper and a dearer fallback
def test_a_skill_answered_by_a_fallback_is_priced_at_the_fallback_s_price(tmp_path, fallback_price):
    from slmstack.skills.llm_classifier import LLMClassifier

    llm = RemoteFake("dear-llm")
    llm.fallbacks = [RemoteFake("backup-llm")]
    llm.responses = [_failed_over("backup-llm", '{"label": "refund"}', (100, 10))]
    skill = LLMClassifier(model=llm, labels=["card", "refund"], k=0, confidence_method="greedy")
    prices = {"models": {"dear-llm": {"input_per_1k": "10", "output_per_1k": "30"},
                         "backup-llm": {"input_per_1k": fallback_price, "output_per_1k": "1"}}}  # fmt: skip
    wf = Workflow([SkillStep("intent")], skills={"intent": skill.fit([])}, name="desk",
                  ledger=f"sqlite:///{tmp_path / 'l.db'}", prices=prices)  # fmt: skip
    result = wf.run("refund please", key="k")
    assert result.trace[0].output.data["model"] == "backup-llm"  # the model that answered
    assert any("failed over: dear-llm" in w for w in result.trace[0].output.warnings)
    assert wf.ledger is not None
    step, run = wf.ledger.rows()
    assert (step.model, step.tokens_in, step.tokens_out) == ("backup-llm", 100, 10)
    assert step.cost == (100 * Decimal(fallback_price) + 10 * 1) / 1000 == run.cost
    wf.ledger.close()


def test_a_skill_whose_votes_came_from_two_models_pays_each_its_own_price(tmp_path):
    from slmstack.skills.llm_classifier import LLMClassifier

    llm = RemoteFake("dear-llm")
    llm.fallbacks = [RemoteFake("backup-llm")]
    answer = '{"label": "refund"}'
    # the greedy answer from the first choice, then it went down: the samples failed over
    llm.responses = [Completion(answer, "dear-llm", Usage(100, 10)),
                     _failed_over("backup-llm", answer, (100, 10))]  # fmt: skip
    skill = LLMClassifier(model=llm, labels=["card", "refund"], k=0, n_samples=3,
                          confidence_method="self_consistency")  # fmt: skip
    prices = {"models": {"dear-llm": {"input_per_1k": "10", "output_per_1k": "30"},
                         "backup-llm": {"input_per_1k": "0.1", "output_per_1k": "1"}}}  # fmt: skip
    wf = Workflow([SkillStep("intent")], skills={"intent": skill.fit([])}, name="desk",
                  ledger=f"sqlite:///{tmp_path / 'l.db'}", prices=prices)  # fmt: skip
    result = wf.run("refund please", key="k")
    prediction = result.trace[0].output
    assert prediction.data["model"] == "dear-llm, backup-llm"
    assert prediction.usage.by_model == (("dear-llm", 100, 10), ("backup-llm", 200, 20))
    assert wf.ledger is not None
    step, _ = wf.ledger.rows()
    assert step.model == "dear-llm, backup-llm" and (step.tokens_in, step.tokens_out) == (300, 30)
    dear = (100 * Decimal(10) + 10 * Decimal(30)) / 1000
    backup = (200 * Decimal("0.1") + 20 * Decimal(1)) / 1000
    assert step.cost == dear + backup
    wf.ledger.close()


def test_a_served_skill_call_answered_by_a_fallback_is_priced_at_its_price(tmp_path):
    from serve_doubles import write_server
    from slmstack.serve import ServeState, load_config
    from slmstack.workflows.metering import Meter

    class LLMSkill(KeywordClassifier):
        backend_ = RemoteFake("dear-llm")  # as LLMClassifier holds its backend

    LLMSkill.backend_.fallbacks = [RemoteFake("backup-llm")]
    prices = {"models": {"dear-llm": {"input_per_1k": "10", "output_per_1k": "30"},
                         "backup-llm": {"machine": "box"}},
              "machines": {"box": {"per_hour": "3.6"}}}  # fmt: skip
    state = ServeState.create(load_config(write_server(tmp_path)))
    state.skills = {"llm": LLMSkill({"refund": 0.9})}
    state._skill_meter = Meter("serve", skills=state.skills, backends={}, prices=prices)
    state.ledger = Ledger(f"sqlite:///{tmp_path / 'serve.db'}")
    usage = Usage(100, 10, 2000.0, by_model=(("backup-llm", 100, 10),))
    cost = state.meter_skill_call("llm", "k", None, usage, 2.0)
    assert cost == to_nano(Decimal("0.002"))  # 2 s on the fallback's machine, at $3.6/h
    state.ledger.flush()
    step, _ = state.ledger.rows()
    assert (step.model, step.machine, step.compute_s) == ("backup-llm", "box", 2.0)
    state.ledger.close()
