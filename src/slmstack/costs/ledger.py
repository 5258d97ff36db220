"""The cost ledger: one append-only row per workflow run and per step, in SQLite or PostgreSQL.

The method: one SQLAlchemy table (as the escalation inbox), so the same code runs on
``sqlite:///ledger.db`` and ``postgresql+psycopg://user@host/db``. Each row holds a request
id, the time, the workflow, the step, the model, tokens in and out, latency, compute
seconds, the cost, and the decision taken and why.

Why these choices:

- **Money is an integer** of nano-dollars (``cost_nusd``), summed as an integer. A token
  of gpt-4o-mini input costs 0.15 micro-dollars, so micro-dollar rows would round on almost
  every call and 100k calls drift by cents; nano-dollars keep each row within half a
  nano-dollar of the exact Decimal (token costs of prices with ≤ 6 decimals per 1k exact).
- **Idempotent**: ``(workflow, request_id, path)`` is unique and inserts are ``ON CONFLICT
  DO NOTHING``, so a resumed batch that writes the same request again adds nothing, while
  two workflows given the same key (a ticket id) keep their own rows.
- **Batched**: rows wait in a buffer and go to the database as one multi-row insert every
  ``batch_size`` rows, every ``flush_every_s`` seconds (checked on append), on ``flush``,
  ``close`` and at exit: a transaction per row would cost a run more than its models do.
  An append never waits for a write in progress (:mod:`slmstack.costs._ledger_buffer`).
- **Indexes** for the report's questions: spend by day, and by workflow, step or model over
  a period of days. A ``day`` column (UTC) keeps the grouping portable across databases.

Example (``# doctest: +SKIP``): ``with Ledger("sqlite:///ledger.db") as ledger:
ledger.append([LedgerRow("req-1", "", "desk", "", "run", datetime.now(UTC))])``.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from slmstack.costs._ledger_buffer import RowBuffer, write_or_log
from slmstack.costs._ledger_migrate import drop_old_unique
from slmstack.costs.prices import from_nano
from slmstack.db_create import create_racing
from slmstack.errors import ConfigError, MissingDependencyError
from slmstack.sqlite_files import make_folder, use_wal

GroupBy = Literal["workflow", "step", "model", "day"]
GROUPS: tuple[GroupBy, ...] = ("workflow", "step", "model", "day")
RUN = "run"  # the kind of the one row per run; step rows carry the step's kind
_TABLE = "slmstack_ledger"
_DIALECTS = ("sqlite", "postgresql")
_UNIQUE = "uq_slmstack_ledger_workflow_request_path"
KEY_COLUMNS = ("workflow", "request_id", "path")  # what makes a row unique


@dataclass(frozen=True)
class LedgerRow:
    """One ledger row: a whole run (``kind == "run"``, ``path == ""``) or one step.

    Attributes:
        request_id: the run's id; with ``workflow`` and ``path`` the row's unique key.
        path: the step's path in the workflow (``steps[0].cascade.tiers[1]``).
        workflow, step, kind: the workflow's name, the step's name and kind.
        at: when the run started (stored in UTC; a naive time is taken as UTC).
        model: the priced model of an API call, the skill of a local step.
        machine: the machine a compute-priced row ran on (``None`` for token prices).
        tokens_in, tokens_out: tokens of the step (of every step, for the run row).
        latency_ms: wall time; compute_s: the seconds priced by the machine.
        cost_nusd: the cost in integer nano-dollars (:attr:`cost` in dollars).
        decision, reason: what the step chose and why (the run: its status and escalation).
        api_key_id: who asked, when a server knows it.
    """

    request_id: str
    path: str
    workflow: str
    step: str
    kind: str
    at: datetime
    model: str = ""
    machine: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    compute_s: float = 0.0
    cost_nusd: int = 0
    decision: str | None = None
    reason: str | None = None
    api_key_id: str | None = None

    @property
    def cost(self) -> Decimal:
        """The cost in dollars, exact."""
        return from_nano(self.cost_nusd)


# Decisions of rows recorded at $0 because their cost is not known: a model the price
# table lacks, or a response without token usage. The proxy records both so, on rows of
# kind LLM_CALL; a workflow's own decisions (a route's branch "no_usage") never count.
UNKNOWN_COST = ("unpriced", "no_usage")
LLM_CALL = "llm"


@dataclass(frozen=True)
class SpendSums:
    """Totals of the step rows of one group (``key``) over a period."""

    key: str
    requests: int
    steps: int
    tokens_in: int
    tokens_out: int
    cost_nusd: int
    compute_s: float
    unknown_cost: int = 0  # step rows whose cost is not known (see UNKNOWN_COST)

    @property
    def cost(self) -> Decimal:
        """The cost in dollars, exact."""
        return from_nano(self.cost_nusd)


def shown_url(url: str) -> str:
    """``url`` with its password masked."""
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


class Ledger:
    """An append-only ledger of runs and steps behind one database URL.

    Args:
        url: ``sqlite:///PATH`` or ``postgresql+psycopg://USER@HOST/DB``.
        create: make the SQLite file, its folder and the table when missing. Readers
            (``slmstack cost report``) pass ``False``, so a mistyped path is an error.
        batch_size: rows kept in memory before one multi-row insert.
        flush_every_s: a buffer older than this is written on the next append, so a
            trickle of requests still reaches the database (after close: every append).

    Raises:
        ConfigError: the URL is not a database URL, its database is not SQLite or
            PostgreSQL, it cannot be opened, or (``create=False``) it holds no ledger.
    """

    def __init__(
        self, url: str, *, create: bool = True, batch_size: int = 512, flush_every_s: float = 5.0
    ):
        try:
            import sqlalchemy as sa
        except ImportError as exc:
            raise MissingDependencyError("sqlalchemy", "workflows", "The cost ledger") from exc
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1; got {batch_size}")
        self.url = url
        self.batch_size = batch_size
        self.flush_every_s = flush_every_s
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            _check_file(Path(url.removeprefix("sqlite:///").partition("?")[0]), create)
        try:
            backend = sa.engine.make_url(url).get_backend_name()
            if backend not in _DIALECTS:
                raise ConfigError(
                    f"the ledger runs on SQLite or PostgreSQL; {shown_url(url)} is {backend}: "
                    "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
                )
            self._engine = sa.create_engine(url)
            if create:  # a reader leaves the file's journal mode as it found it
                use_wal(self._engine)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(
                f"ledger URL {shown_url(url)!r} is not a database URL ({exc}); use "
                "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
            ) from exc
        except ModuleNotFoundError as exc:
            raise MissingDependencyError(
                exc.name or "a database driver", "postgres", f"The ledger at {shown_url(url)!r}"
            ) from exc
        self.dialect = self._engine.dialect.name
        self._table = _define(sa.MetaData())
        self._open(create)
        self._buffer, self._closed = RowBuffer(), False
        # Rows still buffered are written when the ledger is dropped or at exit (errors logged).
        self._finalizer = weakref.finalize(self, write_or_log, self._buffer, self._engine,
                                           self._table, url)  # fmt: skip

    def _open(self, create: bool) -> None:
        import sqlalchemy as sa

        try:
            if create:
                create_racing(lambda: self._table.metadata.create_all(self._engine))
                drop_old_unique(self._engine, self._table, shown_url(self.url))
                unique = next(i for i in self._table.indexes if i.name == _UNIQUE)
                create_racing(lambda: unique.create(self._engine, checkfirst=True))  # old ledgers
            elif not sa.inspect(self._engine).has_table(_TABLE):
                raise ConfigError(
                    f"{shown_url(self.url)} is a database but not an slmstack ledger (it has "
                    f"no {_TABLE!r} table); pass the ledger a workflow writes to (its `ledger:`)"
                )
        except sa.exc.DatabaseError as exc:
            raise ConfigError(
                f"cannot open the ledger {shown_url(self.url)}: {exc.orig}; check the path (or "
                "server), that it is a database, and that you may read and write it"
            ) from None

    # ------------------------------------------------------------------ writing
    def append(self, rows: Iterable[LedgerRow]) -> None:
        """Buffer ``rows``; write the buffer once it is full or old (see the class)."""
        now = time.monotonic()
        rows_in = (((r.workflow, r.request_id, r.path), _values(r)) for r in rows)
        waiting = self._buffer.add(rows_in, now)
        old = now - self._buffer.oldest >= self.flush_every_s
        if self._closed or waiting >= self.batch_size or old:  # closed: no later flush
            self.flush()

    @property
    def pending(self) -> int:
        """Rows buffered and not yet written."""
        return len(self._buffer)

    def flush(self) -> int:
        """Write the buffered rows now; the number sent (rows already stored are skipped)."""
        return self._buffer.write(self._engine, self._table, self.url)

    def close(self) -> None:
        """Flush and release the database connections (a failed flush raises, rows kept)."""
        self.flush()
        self._finalizer.detach()
        self._closed = True
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    def _where(self, since: date | None, until: date | None) -> list[Any]:
        t = self._table.c
        where = []
        if since is not None:
            where.append(t.day >= since)
        if until is not None:
            where.append(t.day <= until)
        return where

    def rows(
        self,
        *,
        request_id: str | None = None,
        workflow: str | None = None,
        since: date | None = None,
        until: date | None = None,
    ) -> list[LedgerRow]:
        """Stored rows in the order written (buffered ones are flushed first).

        ``request_id`` and ``workflow`` keep only the rows of one request or workflow.
        """
        import sqlalchemy as sa

        self.flush()
        t = self._table
        query = sa.select(t).where(*self._where(since, until)).order_by(t.c.id)
        if request_id is not None:
            query = query.where(t.c.request_id == request_id)
        if workflow is not None:
            query = query.where(t.c.workflow == workflow)
        with self._engine.connect() as conn:
            out = []
            for r in conn.execute(query):
                data = {k: r._mapping[k] for k in _FIELDS}
                at = data["at"]  # SQLite drops the zone; PostgreSQL gives its session's
                data["at"] = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
                out.append(LedgerRow(**data))
            return out

    def spend(
        self, by: GroupBy, *, since: date | None = None, until: date | None = None
    ) -> list[SpendSums]:
        """Step rows summed by ``by`` over days ``since``..``until`` (inclusive, UTC).

        A ``by="step"`` key is ``"workflow: step"``, since two workflows may name a step
        alike.
        """
        import sqlalchemy as sa

        if by not in GROUPS:
            raise ConfigError(f"cannot group spend by {by!r}; use one of {', '.join(GROUPS)}")
        self.flush()
        c = self._table.c
        keys = [c.workflow, c.step] if by == "step" else [getattr(c, by)]
        query = (
            sa.select(*keys, *_sum_columns(c))
            .where(c.kind != RUN, *self._where(since, until))
            .group_by(*keys)
            .order_by(*keys)
        )
        with self._engine.connect() as conn:
            return [
                _sums(": ".join(str(k) for k in r[: len(keys)]), r[len(keys) :])
                for r in conn.execute(query)
            ]

    def total(self, *, since: date | None = None, until: date | None = None) -> SpendSums:
        """Step rows over the period summed into one (``requests`` counted once each)."""
        import sqlalchemy as sa

        self.flush()
        c = self._table.c
        query = sa.select(*_sum_columns(c)).where(c.kind != RUN, *self._where(since, until))
        with self._engine.connect() as conn:
            return _sums("total", conn.execute(query).one())


def _sum_columns(c: Any) -> list[Any]:
    """Requests, steps, tokens in and out, nano-dollars, compute seconds, unknown costs."""
    import sqlalchemy as sa

    f = sa.func
    unknown = sa.case((sa.and_(c.kind == LLM_CALL, c.decision.in_(UNKNOWN_COST)), 1), else_=0)
    run = c.workflow + "\x1f" + c.request_id  # one request of one workflow
    return [f.count(sa.distinct(run)), f.count(), f.sum(c.tokens_in),
            f.sum(c.tokens_out), f.sum(c.cost_nusd), f.sum(c.compute_s),
            f.sum(unknown)]  # fmt: skip


def _sums(key: str, values: Any) -> SpendSums:
    # PostgreSQL sums a bigint into a numeric (Decimal): back to exact ints here.
    requests, steps, t_in, t_out, cost, compute, unknown = values
    return SpendSums(
        key, int(requests), int(steps), int(t_in or 0), int(t_out or 0), int(cost or 0),
        float(compute or 0.0), int(unknown or 0),
    )  # fmt: skip


_FIELDS = tuple(f.name for f in fields(LedgerRow))


def _values(row: LedgerRow) -> dict[str, Any]:
    # Not dataclasses.asdict: its deep copy was two thirds of the ledger's cost per run.
    values = {name: getattr(row, name) for name in _FIELDS}
    # SQLite keeps a time's wall clock, not its zone, and rows() reads it as UTC: store UTC.
    at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC)
    values["at"] = at = at.astimezone(UTC)
    values["day"] = at.date()
    return values


def _define(meta: Any) -> Any:
    import sqlalchemy as sa

    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER
    return sa.Table(
        _TABLE,
        meta,
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("workflow", sa.String(200), nullable=False),
        sa.Column("step", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("machine", sa.String(100)),
        sa.Column("tokens_in", sa.BigInteger, nullable=False),
        sa.Column("tokens_out", sa.BigInteger, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("compute_s", sa.Float, nullable=False),
        sa.Column("cost_nusd", sa.BigInteger, nullable=False),
        sa.Column("decision", sa.String(200)),
        sa.Column("reason", sa.Text),
        sa.Column("api_key_id", sa.String(200)),
        # Two workflows may get the same key (ledgers before 2026-12-04: see _ledger_migrate).
        sa.Index(_UNIQUE, "workflow", "request_id", "path", unique=True),
        sa.Index("ix_slmstack_ledger_day", "day"),
        sa.Index("ix_slmstack_ledger_workflow_day", "workflow", "day"),
        sa.Index("ix_slmstack_ledger_step_day", "workflow", "step", "day"),
        sa.Index("ix_slmstack_ledger_model_day", "model", "day"),
    )


def _check_file(file: Path, create: bool) -> None:
    """A writer makes the folder; a reader opens an existing file only."""
    if create:
        make_folder(file, "ledger", ConfigError)
    elif not file.is_file() or file.stat().st_size == 0:
        what = ("is a folder, not a file" if file.is_dir()
                else "is empty" if file.exists() else "does not exist")  # fmt: skip
        raise ConfigError(
            f"ledger {file} {what}; check the path (a workflow writes its ledger where its "
            "`ledger:` entry says, once it has run)"
        )


__all__ = ["GROUPS", "GroupBy", "Ledger", "LedgerRow", "SpendSums"]
