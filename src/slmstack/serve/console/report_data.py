"""What the reports page shows beside spend: escalation rate by day, latency percentiles.

Both are read from the ledger's run rows (one per workflow run or direct skill call, with
its decision and wall time), so they cover exactly the traffic the spend report covers.
Percentiles are nearest-rank (``p95`` is a latency that 95% of runs did not exceed), over
the rows of the chosen period. They are computed here rather than in SQL because SQLite
has no percentile function; a period is read whole, so the page offers periods of days,
not years (a busy server should read a year with ``slmstack cost report``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from slmstack.costs.ledger import RUN, LedgerRow

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class DayRate:
    """One day's workflow runs, and the share that escalated."""

    day: date
    runs: int
    escalated: int

    @property
    def rate(self) -> float:
        """Escalated runs / runs."""
        return self.escalated / self.runs if self.runs else 0.0


@dataclass(frozen=True)
class Latency:
    """Latency percentiles (ms) of one workflow or skill over the period."""

    target: str
    runs: int
    percentiles: dict[int, float]
    mean: float


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank ``p``-th percentile of already sorted values (not empty)."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def runs_of(rows: Sequence[LedgerRow]) -> list[LedgerRow]:
    """The run rows (one per run) among ledger rows."""
    return [r for r in rows if r.kind == RUN]


def escalation_by_day(runs: Sequence[LedgerRow], days: Sequence[date]) -> list[DayRate]:
    """Per day of ``days``: workflow runs and escalations (direct skill calls left out)."""
    total: dict[date, int] = defaultdict(int)
    escalated: dict[date, int] = defaultdict(int)
    for r in runs:
        if r.workflow.startswith("skill:"):
            continue
        day = r.at.date()
        total[day] += 1
        escalated[day] += r.decision == "escalated"
    return [DayRate(d, total[d], escalated[d]) for d in days]


def latency_by_target(runs: Sequence[LedgerRow]) -> list[Latency]:
    """Latency percentiles per workflow (and per ``skill:NAME``), by name."""
    found: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        found[r.workflow].append(r.latency_ms)
    out = []
    for target in sorted(found):
        values = sorted(found[target])
        out.append(
            Latency(
                target, len(values), {p: percentile(values, p) for p in PERCENTILES},
                sum(values) / len(values),
            )
        )  # fmt: skip
    return out


def latency_by_day(runs: Sequence[LedgerRow], days: Sequence[date], p: int) -> list[float | None]:
    """The ``p``-th percentile latency of each day's runs (``None`` for a day without)."""
    found: dict[date, list[float]] = defaultdict(list)
    for r in runs:
        found[r.at.date()].append(r.latency_ms)
    return [percentile(sorted(found[d]), p) if found[d] else None for d in days]


def day_range(first: date, last: date) -> list[date]:
    """Every day from ``first`` to ``last``, inclusive."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


__all__ = [
    "PERCENTILES",
    "DayRate",
    "Latency",
    "day_range",
    "escalation_by_day",
    "latency_by_day",
    "latency_by_target",
    "percentile",
    "runs_of",
]
