"""The recorded traffic: one row per proxied chat call, next to the cost ledger.

The cost ledger (:class:`~slmstack.costs.Ledger`) keeps what a call cost; this table keeps
what it said: the system prompt, the last user message, every message, the answer, its
tokens, latency and cost, masked when masking is on. Task discovery and distillation read
it. It is one SQLAlchemy table handled as the ledger is (``sqlite:///PATH`` by default,
``postgresql+psycopg://...`` by URL, in the same database as the ledger), written in
batches by the proxy's recorder thread with ``ON CONFLICT DO NOTHING`` on the request id.

Example:
    >>> store = TrafficStore("sqlite:///proxy.db")  # doctest: +SKIP
    >>> [row.user for row in store.rows()][:1]  # doctest: +SKIP
    ['Classify this banking query ...']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from slmstack.proxy.db import insert_new, open_tables

TABLE = "slmstack_traffic"


@dataclass(frozen=True)
class TrafficRow:
    """One proxied chat call.

    Attributes:
        request_id: the proxy's id for the call (also the ledger row's).
        at: when it arrived (UTC).
        model: the model the client asked for; response_model: the one that answered.
        status: the upstream's HTTP status (0: unreachable).
        stream: whether the answer was streamed.
        system: the system prompt(s), joined; user: the last user message.
        messages: every message, as JSON; params: the other request fields, as JSON.
        response: the answer's text; finish_reason: why it stopped.
        tokens_in, tokens_out: tokens; tokens_source: ``upstream`` (its usage),
            ``counted`` (the proxy's tokenizer) or ``missing``.
        latency_ms, ttfb_ms: arrival to the last byte, and to the first.
        cost_nusd: nano-dollars; cost_status: ``priced``, ``unpriced`` (the model has no
            price: the cost is unknown, not zero) or ``no_usage`` (tokens unknown).
        masked: whether personal data was masked before storage.
        api_key_id: a fingerprint of the client's key (never the key).
        problem: what could not be read from the exchange, if anything.
        answered_by: ``llm`` (forwarded upstream) or ``student`` (a promoted task's
            student answered on the proxy: no LLM cost).
        task_id: the shadowed or served task the call belongs to, when it is one's.
    """

    request_id: str
    at: datetime
    model: str
    status: int
    stream: bool
    system: str
    user: str
    messages: str
    params: str
    response: str
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_source: str = "upstream"
    latency_ms: float = 0.0
    ttfb_ms: float = 0.0
    cost_nusd: int = 0
    cost_status: str = "priced"
    masked: bool = False
    response_model: str = ""
    finish_reason: str | None = None
    upstream_id: str = ""
    api_key_id: str | None = None
    problem: str | None = None
    answered_by: str = "llm"
    task_id: str | None = None


_FIELDS = tuple(f.name for f in fields(TrafficRow))


class TrafficStore:
    """The traffic table behind one database URL (the ledger's).

    Args:
        url: ``sqlite:///PATH`` or ``postgresql+psycopg://USER@HOST/DB``.
        create: make the SQLite file and the table when missing; readers pass ``False``.

    Raises:
        ConfigError: not a database URL, not SQLite or PostgreSQL, cannot be opened, or
            (``create=False``) it holds no recorded traffic.
    """

    def __init__(self, url: str, *, create: bool = True):
        self.url = url
        self._engine, self._table = open_tables(
            url, _define, create=create, what="recorded traffic"
        )

    def insert(self, rows: Iterable[TrafficRow]) -> int:
        """Write ``rows`` in one statement; rows whose request id is stored are skipped."""
        return insert_new(self._engine, self._table, [_values(r) for r in rows], ["request_id"])

    def rows(self, *, request_id: str | None = None, limit: int | None = None) -> list[TrafficRow]:
        """Stored rows in arrival order (only ``request_id``'s, when given)."""
        import sqlalchemy as sa

        query = sa.select(self._table).order_by(self._table.c.id)
        if request_id is not None:
            query = query.where(self._table.c.request_id == request_id)
        if limit is not None:
            query = query.limit(limit)
        with self._engine.connect() as conn:
            out = []
            for r in conn.execute(query):
                data = {k: r._mapping[k] for k in _FIELDS}
                if data["at"].tzinfo is None:  # SQLite drops the zone; every time is UTC
                    data["at"] = data["at"].replace(tzinfo=UTC)
                out.append(TrafficRow(**data))
            return out

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()


def _values(row: TrafficRow) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in _FIELDS}
    values["day"] = row.at.astimezone(UTC).date()
    return values


def _define(meta: Any) -> Any:
    import sqlalchemy as sa

    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    return sa.Table(
        TABLE,
        meta,
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("response_model", sa.String(200), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("system", sa.Text, nullable=False),
        sa.Column("user", sa.Text, nullable=False),
        sa.Column("messages", sa.Text, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("finish_reason", sa.String(64)),
        sa.Column("tokens_in", sa.BigInteger, nullable=False),
        sa.Column("tokens_out", sa.BigInteger, nullable=False),
        sa.Column("tokens_source", sa.String(16), nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ttfb_ms", sa.Float, nullable=False),
        sa.Column("cost_nusd", sa.BigInteger, nullable=False),
        sa.Column("cost_status", sa.String(16), nullable=False),
        sa.Column("masked", sa.Boolean, nullable=False),
        sa.Column("upstream_id", sa.String(200), nullable=False),
        sa.Column("api_key_id", sa.String(64)),
        sa.Column("problem", sa.Text),
        # added with serving; older rows were all forwarded to the LLM
        sa.Column("answered_by", sa.String(16), nullable=False, server_default="llm"),
        sa.Column("task_id", sa.String(64)),
        sa.Index("ix_slmstack_traffic_day", "day"),
        sa.Index("ix_slmstack_traffic_model_day", "model", "day"),
    )


__all__ = ["TABLE", "TrafficRow", "TrafficStore"]
