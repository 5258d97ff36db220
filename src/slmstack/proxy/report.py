"""``slmstack migration report``: what moving an app's tasks to students saved, and at what quality.

The figures, all from the proxy's database (traffic, shadow comparisons, promotions):

- **Spend after** is what the LLM was actually paid: the recorded cost of the calls the
  LLM answered. **Spend before** is what every recorded call would have cost had the LLM
  answered it: the LLM's calls at their recorded cost, and each student-answered call
  priced as a call to the model the app asked for, from its token counts and the price
  table; where its tokens are missing (no tokenizer at the proxy), at its task's mean
  recorded LLM cost per call (with ``--price-as``, its task's mean tokens at that model's
  prices). The report counts the calls priced each way, and the calls
  whose cost is unknown (an unpriced model), which are in neither sum, never counted as $0.
- **Saved per month** is (before − after) over the recorded time span, scaled to 30 days:
  the saving at the volume and the share answered locally that the span shows.
- **Per task**: calls, the share the student answered, agreement with the LLM (shadowed
  calls and audited calls apart), the latest promotion decision (threshold, coverage,
  the agreement's lower bound), and latency p50/p95 of the LLM's and the student's calls.
  A call belongs to a task by the ``task_id`` the proxy recorded with it, else by its
  shadow comparison, else by the templates of ``--tasks`` (``slmstack discover --json``).
- **Calls by who answered** per hour (a span under three days) or per day, for the chart.

Columns that older databases lack (``answered_by``, ``task_id``, the promotion's
``threshold`` and ``coverage``, the shadow row's ``kind``) read as "the LLM", none, none
and "shadow".
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from slmstack.costs.prices import PriceTable, from_nano, to_nano
from slmstack.errors import ConfigError
from slmstack.proxy.db import open_tables
from slmstack.proxy.promote import PROMOTIONS, SHADOW, wilson_lower
from slmstack.proxy.recording import AUDIT, WORKFLOW
from slmstack.proxy.shadow import ShadowTask, owner, read_tasks
from slmstack.proxy.traffic import TABLE as TRAFFIC

MONTH = timedelta(days=30)
LEDGER = "slmstack_ledger"  # the cost ledger's table, where the audits' spend is
_KNOWN_COST = ("priced", "failed")  # a failed call's recorded $0 is its cost, not unknown
_SKIP = ("messages", "params")  # long columns the report does not need
_DECISION = ("promoted", "n", "agreed", "lower_bound", "min_agreement", "confidence",
             "threshold", "coverage", "reason")  # fmt: skip


@dataclass
class TaskFigures:
    """One task's volume, quality, decision and latency."""

    task_id: str
    kind: str | None = None
    template: str | None = None
    calls: int = 0
    student_calls: int = 0
    before_nusd: int = 0
    after_nusd: int = 0
    # Per shadow row kind (shadow, cascade, audit): n, agreed, rate, lower_bound.
    agreement: dict[str, dict[str, Any]] = field(default_factory=dict)
    audit_calls: int = 0  # LLM calls that audited the student's answers (spend, no traffic)
    promotion: dict[str, Any] | None = None
    llm_ms: dict[str, float | None] = field(default_factory=lambda: _latency([]))
    student_ms: dict[str, float | None] = field(default_factory=lambda: _latency([]))
    student_ms_from: str | None = None  # "served" calls, or the "shadow" compute time

    @property
    def local_share(self) -> float | None:
        """The share of the task's calls the student answered."""
        return self.student_calls / self.calls if self.calls else None


@dataclass
class MigrationReport:
    """Everything ``slmstack migration report`` shows (see the module docstring)."""

    url: str
    prices: str
    calls: int
    student_calls: int
    first_at: datetime | None
    last_at: datetime | None
    before_nusd: int
    after_nusd: int
    priced_by: dict[str, int]  # how each call's "before" was found
    unpriced_calls: int
    audit_calls: int  # LLM calls that audited students' answers: in "after", not in "calls"
    tasks: list[TaskFigures]
    task_of: dict[str, int]  # how calls were put in tasks
    unit: str  # "hour" or "day"
    buckets: list[tuple[str, int, int]]  # (label, LLM calls, student calls)

    @property
    def span(self) -> timedelta:
        """The recorded time span (first call to last)."""
        if self.first_at is None or self.last_at is None:
            return timedelta(0)
        return self.last_at - self.first_at

    @property
    def saved_nusd(self) -> int:
        """Spend before minus spend after, nano-dollars."""
        return self.before_nusd - self.after_nusd

    @property
    def saved_per_month(self) -> Decimal | None:
        """Dollars saved per 30 days at the span's rate (``None`` for a span of 0)."""
        seconds = Decimal(self.span // timedelta(microseconds=1)).scaleb(-6)
        if seconds <= 0:
            return None
        return (from_nano(self.saved_nusd) * Decimal(MONTH.total_seconds()) / seconds).quantize(
            Decimal("0.000001")
        )

    @property
    def calls_per_month(self) -> float | None:
        """The recorded volume scaled to 30 days."""
        seconds = self.span.total_seconds()
        return self.calls * MONTH.total_seconds() / seconds if seconds > 0 else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe view (money as exact decimal strings)."""
        out = asdict(self)
        for name in ("first_at", "last_at"):
            value = getattr(self, name)
            out[name] = value.isoformat() if value else None
        for name in ("before", "after"):
            out[f"{name}_usd"] = str(from_nano(out.pop(f"{name}_nusd")))
        out["saved_usd"] = str(from_nano(self.saved_nusd))
        saved = self.saved_per_month
        out["saved_per_month_usd"] = None if saved is None else str(saved)
        out["calls_per_month"] = self.calls_per_month
        out["local_share"] = self.student_calls / self.calls if self.calls else None
        out["span_seconds"] = self.span.total_seconds()
        for task, shown in zip(self.tasks, out["tasks"], strict=True):
            for name in ("before", "after"):
                shown[f"{name}_usd"] = str(from_nano(shown.pop(f"{name}_nusd")))
            shown["local_share"] = task.local_share
        out["buckets"] = [list(b) for b in self.buckets]
        return out


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_tables(url: str) -> dict[str, list[dict[str, Any]]]:
    """The traffic, shadow, promotion and audit-ledger rows of ``url``, as dicts by column.

    Raises:
        ConfigError: no database, or no recorded traffic in it.
    """
    import sqlalchemy as sa

    def stub(meta: Any) -> Any:
        return sa.Table(TRAFFIC, meta)  # only its name: the columns are read as they are

    engine, _ = open_tables(url, stub, create=False, what="recorded traffic")
    try:
        meta = sa.MetaData()
        names = (TRAFFIC, SHADOW, PROMOTIONS, LEDGER)
        meta.reflect(engine, only=lambda name, _: name in names)
        out: dict[str, list[dict[str, Any]]] = {}
        with engine.connect() as conn:
            for name in names:
                table = meta.tables.get(name)
                if table is None:
                    out[name] = []
                    continue
                columns = [c for c in table.c if c.name not in _SKIP]
                query = sa.select(*columns).order_by(table.c.id)
                if name == LEDGER:  # only the LLM calls that audited a student's answer
                    query = query.where(table.c.workflow == WORKFLOW, table.c.path == AUDIT)
                out[name] = [dict(r._mapping) for r in conn.execute(query)]
    finally:
        engine.dispose()
    for rows in out.values():
        for row in rows:
            if row.get("at") is not None:
                row["at"] = _utc(row["at"])
    return out


def _templates(tasks_file: Path | None) -> list[tuple[ShadowTask, str]]:
    if tasks_file is None:
        return []
    tasks = read_tasks(tasks_file)
    try:
        return [(ShadowTask(t["task_id"], t["kind"], t["system"], t["prefix"], t["suffix"], None),
                 t.get("template") or "") for t in tasks.values()]  # fmt: skip
    except KeyError as exc:
        raise ConfigError(
            f"a task in {tasks_file} lacks {exc}; write the file with "
            "`slmstack discover --json > tasks.json`"
        ) from None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 1), or ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _latency(values: Sequence[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}


def _agreement(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    agree = [bool(r["agree"]) for r in rows]
    n, k = len(agree), sum(agree)
    return {"n": n, "agreed": k, "rate": k / n if n else None,
            "lower_bound": wilson_lower(k, n) if n else None}  # fmt: skip


def build_report(
    url: str,
    prices: PriceTable,
    *,
    tasks_file: Path | None = None,
    price_as: str | None = None,
) -> MigrationReport:
    """The migration report of the proxy's database at ``url`` (see the module docstring).

    Args:
        url: the database ``slmstack proxy`` records to.
        prices: the price table student-answered calls are priced with.
        tasks_file: ``slmstack discover --json`` output, to put unshadowed calls in tasks.
        price_as: price student-answered calls as this model (as ``slmstack proxy
            --price-as`` priced the LLM's); by default the model each call named.
    """
    tables = read_tables(url)
    traffic, shadow = tables[TRAFFIC], tables[SHADOW]
    templates = _templates(tasks_file)
    shadow_task = {r["request_id"]: r["task_id"] for r in shadow}
    task_of: Counter[str] = Counter()
    figures: dict[str, TaskFigures] = {}
    for matcher, template in templates:
        figures[matcher.task_id] = TaskFigures(matcher.task_id, matcher.kind, template)

    def task_for(row: Mapping[str, Any]) -> str | None:
        if row.get("task_id"):
            task_of["recorded"] += 1
            return str(row["task_id"])
        if row["request_id"] in shadow_task:
            task_of["shadow"] += 1
            return str(shadow_task[row["request_id"]])
        found = owner([matcher for matcher, _ in templates], row["system"], row["user"])
        if found is not None:  # the most specific task's call
            task_of["template"] += 1
            return found[0].task_id
        task_of["none"] += 1
        return None

    by_task: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for row in traffic:
        row["by"] = row.get("answered_by") or "llm"
        by_task[task_for(row)].append(row)
    priced_by: Counter[str] = Counter()
    unpriced = 0
    for task_id, rows in by_task.items():
        fig = figures.setdefault(task_id or "", TaskFigures(task_id or ""))
        llm = [r for r in rows if r["by"] == "llm"]
        known = [r for r in llm if r["cost_status"] in _KNOWN_COST]
        paid = [r["cost_nusd"] for r in known if r["status"] == 200]
        mean = round(Decimal(sum(paid)) / len(paid)) if paid else None
        counted = [r for r in known if r["status"] == 200 and r["tokens_source"] != "missing"]
        mean_tokens = (
            (sum(r["tokens_in"] for r in counted) / len(counted),
             sum(r["tokens_out"] for r in counted) / len(counted))
            if counted else None
        )  # fmt: skip
        fig.calls, fig.student_calls = len(rows), len(rows) - len(llm)
        fig.after_nusd = sum(r["cost_nusd"] for r in known)
        fig.before_nusd = fig.after_nusd
        priced_by["recorded"] += len(known)
        unpriced += len(llm) - len(known)
        for r in rows:
            if r["by"] == "llm":
                continue
            nusd, how = _as_llm(r, prices, price_as, mean, mean_tokens)
            priced_by[how] += nusd is not None
            unpriced += nusd is None
            fig.before_nusd += nusd or 0
        fig.llm_ms = _latency([r["latency_ms"] for r in llm if r["status"] == 200])
        served = [r["latency_ms"] for r in rows if r["by"] != "llm"]
        if served:
            fig.student_ms, fig.student_ms_from = _latency(served), "served"
    owner_of = {r["request_id"]: task_id for task_id, rows in by_task.items() for r in rows}
    for audit in tables[LEDGER]:
        task_id = shadow_task.get(audit["request_id"]) or owner_of.get(audit["request_id"]) or ""
        fig = figures.setdefault(task_id, TaskFigures(task_id))
        fig.audit_calls += 1
        if audit["decision"] in _KNOWN_COST:
            fig.after_nusd += audit["cost_nusd"]
        else:
            unpriced += 1
    for task_id, rows in _group(shadow).items():
        fig = figures.setdefault(task_id, TaskFigures(task_id))
        kinds = sorted({r.get("kind") or "shadow" for r in rows})
        fig.agreement = {
            kind: _agreement(r for r in rows if (r.get("kind") or "shadow") == kind)
            for kind in kinds
        }
        if fig.student_ms_from is None:
            fig.student_ms = _latency([r["student_ms"] for r in rows])
            fig.student_ms_from = "shadow"
    for task_id, rows in _group(tables[PROMOTIONS]).items():
        last = rows[-1]
        fig = figures.setdefault(task_id, TaskFigures(task_id))
        fig.promotion = {k: last.get(k) for k in _DECISION}
        fig.promotion["at"] = last["at"].isoformat()
    times = [r["at"] for r in traffic]
    first, last_at = (min(times), max(times)) if times else (None, None)
    unit = "hour" if first and last_at and last_at - first < timedelta(days=3) else "day"
    ordered = sorted(figures.values(), key=lambda f: (f.task_id == "", -f.calls, f.task_id))
    return MigrationReport(
        url=url, prices=prices.version + (f", student calls as {price_as}" if price_as else ""),
        calls=len(traffic), student_calls=sum(1 for r in traffic if r["by"] != "llm"),
        first_at=first, last_at=last_at,
        before_nusd=sum(f.before_nusd for f in figures.values()),
        after_nusd=sum(f.after_nusd for f in figures.values()),
        priced_by={k: v for k, v in priced_by.items() if v}, unpriced_calls=unpriced,
        audit_calls=len(tables[LEDGER]), tasks=ordered,
        task_of=dict(task_of), unit=unit, buckets=_buckets(traffic, unit),
    )  # fmt: skip


def _group(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r["task_id"]].append(r)
    return out


def _as_llm(
    row: Mapping[str, Any],
    prices: PriceTable,
    price_as: str | None,
    mean: int | None,
    mean_tokens: tuple[float, float] | None,
) -> tuple[int | None, str]:
    """What a student-answered call would have cost the LLM, and how that was found.

    Its own tokens at the model's (or ``price_as``'s) prices; without them, the task's
    mean tokens of the LLM's calls at ``price_as``'s prices, or else the task's mean
    recorded cost (the model the app asked for).
    """
    model = price_as or row["model"]
    entry = prices.models.get(model)
    per_token = entry is not None and entry.input_per_1k is not None
    if row["tokens_source"] != "missing" and per_token:
        return to_nano(prices.token_cost(model, row["tokens_in"], row["tokens_out"])), "tokens"
    if price_as is not None and per_token and mean_tokens is not None:
        t_in, t_out = mean_tokens
        return to_nano(prices.token_cost(model, round(t_in), round(t_out))), "task mean tokens"
    if mean is not None:
        return mean, "task mean"
    return None, "unpriced"


def _buckets(traffic: Sequence[Mapping[str, Any]], unit: str) -> list[tuple[str, int, int]]:
    """Calls per hour or day, by the LLM and by students, with empty buckets in between."""
    if not traffic:
        return []
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)

    def floor(at: datetime) -> datetime:
        at = at.replace(minute=0, second=0, microsecond=0)
        return at if unit == "hour" else at.replace(hour=0)

    counts: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    for r in traffic:
        counts[floor(r["at"])][r["by"] != "llm"] += 1
    out = []
    at, end = min(counts), max(counts)
    fmt = "%Y-%m-%d %H:00" if unit == "hour" else "%Y-%m-%d"
    while at <= end:
        llm, student = counts.get(at, [0, 0])
        out.append((at.strftime(fmt), llm, student))
        at += step
    return out


__all__ = ["MigrationReport", "TaskFigures", "build_report", "percentile", "read_tables"]
