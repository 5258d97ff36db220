"""Promotion: a task moves to its student only when agreement is proven, not just observed.

The gate: over the last ``window`` shadowed calls of the task (at least ``min_n`` of
them), ``k`` of ``n`` agreed with the LLM. The task is promoted when the Wilson score
interval's lower bound on the agreement rate, at one-sided ``confidence``, reaches
``min_agreement``. A point estimate would promote a student that agreed on 19 calls of
20 (95%) at a 0.9 bar; the lower bound (0.80 at 95% confidence) says 20 calls do not show
it yet, while 187 agreeing calls in 200 (93.5%) do. Why Wilson rather than the normal
approximation: it stays inside [0, 1] and keeps its coverage near k = n, which is where
a good student is; it is close to the exact Clopper-Pearson bound at these sizes and
needs no beta quantile (no scipy in the core).

Each decision is one row of ``slmstack_promotions`` (promoted or not, with n, k and the
bound), so the history of a task says when and on what evidence it changed hands.
Serving the promoted task from the student (with the cascade back to the LLM and the
automatic demotion) is not done here: this is the decision, recorded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from statistics import NormalDist
from typing import Any

from slmstack.errors import ConfigError
from slmstack.proxy.db import insert_new, open_tables
from slmstack.proxy.shadow import ShadowRow

SHADOW = "slmstack_shadow"
PROMOTIONS = "slmstack_promotions"


def wilson_lower(k: int, n: int, confidence: float = 0.95) -> float:
    """The lower bound of the Wilson score interval for ``k`` successes in ``n`` (one-sided).

    Example:
        >>> round(wilson_lower(19, 20), 3)
        0.804
    """
    if n <= 0:
        return 0.0
    if not 0 <= k <= n:
        raise ConfigError(f"successes must be within 0..n; got k={k}, n={n}")
    z = NormalDist().inv_cdf(confidence)
    p = k / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z * z / n))


@dataclass(frozen=True)
class Promotion:
    """One gate decision for a task."""

    task_id: str
    at: datetime
    promoted: bool
    n: int
    agreed: int
    lower_bound: float
    min_agreement: float
    confidence: float
    reason: str


class ShadowStore:
    """The shadow comparisons and promotion decisions, in the proxy's database."""

    def __init__(self, url: str, *, create: bool = True):
        self.url = url
        self._engine, self._shadow = open_tables(url, _define, create=create,
                                                 what="shadow comparisons")  # fmt: skip
        self._promotions = self._shadow.metadata.tables[PROMOTIONS]

    def insert(self, rows: Iterable[ShadowRow]) -> int:
        """Write shadow rows (one per call and task; stored ones are skipped)."""
        values = [{f.name: getattr(r, f.name) for f in fields(ShadowRow)} for r in rows]
        return insert_new(self._engine, self._shadow, values, ["request_id", "task_id"])

    def agreements(self, task_id: str, *, window: int) -> list[bool]:
        """The agreement of the task's last ``window`` shadowed calls, oldest first."""
        import sqlalchemy as sa

        t = self._shadow.c
        query = (sa.select(t.agree).where(t.task_id == task_id)
                 .order_by(t.id.desc()).limit(window))  # fmt: skip
        with self._engine.connect() as conn:
            return [bool(r[0]) for r in conn.execute(query)][::-1]

    def record(self, decision: Promotion) -> None:
        """Store a decision."""
        values = {f.name: getattr(decision, f.name) for f in fields(Promotion)}
        with self._engine.begin() as conn:
            conn.execute(self._promotions.insert(), [values])

    def promoted(self, task_id: str) -> bool:
        """Whether the task's latest decision promoted it."""
        import sqlalchemy as sa

        t = self._promotions.c
        query = sa.select(t.promoted).where(t.task_id == task_id).order_by(t.id.desc()).limit(1)
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return bool(row[0]) if row is not None else False


def promote(
    store: ShadowStore,
    task_id: str,
    *,
    min_n: int = 200,
    min_agreement: float = 0.9,
    confidence: float = 0.95,
    window: int = 2000,
) -> Promotion:
    """Decide (and record) whether ``task_id`` moves to its student (see the module).

    Raises:
        ConfigError: a parameter is out of range.
    """
    if not 0 < min_agreement < 1 or not 0.5 < confidence < 1:
        raise ConfigError(
            f"min_agreement must be in (0, 1) and confidence in (0.5, 1); got {min_agreement} "
            f"and {confidence}"
        )
    if min_n < 1 or window < min_n:
        raise ConfigError(f"need 1 <= min_n <= window; got min_n={min_n}, window={window}")
    seen = store.agreements(task_id, window=window)
    n, k = len(seen), sum(seen)
    bound = wilson_lower(k, n, confidence)
    if n < min_n:
        ok, reason = False, (f"{n} shadowed calls, fewer than the {min_n} the gate needs; keep "
                             "the proxy shadowing this task")  # fmt: skip
    elif bound < min_agreement:
        ok, reason = False, (f"agreement {k}/{n}: its lower bound {bound:.3f} at {confidence:.0%} "
                             f"is under {min_agreement}")  # fmt: skip
    else:
        ok, reason = True, (f"agreement {k}/{n}: its lower bound {bound:.3f} at {confidence:.0%} "
                            f"reaches {min_agreement}")  # fmt: skip
    decision = Promotion(task_id, datetime.now(UTC), ok, n, k, bound, min_agreement, confidence,
                         reason)  # fmt: skip
    store.record(decision)
    return decision


def _define(meta: Any) -> Any:
    import sqlalchemy as sa

    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    sa.Table(
        PROMOTIONS, meta,
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(64), nullable=False, index=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promoted", sa.Boolean, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("agreed", sa.Integer, nullable=False),
        sa.Column("lower_bound", sa.Float, nullable=False),
        sa.Column("min_agreement", sa.Float, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )  # fmt: skip
    return sa.Table(
        SHADOW, meta,
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("agree", sa.Boolean, nullable=False),
        sa.Column("llm_answer", sa.Text, nullable=False),
        sa.Column("student_answer", sa.Text, nullable=False),
        sa.Column("student_confidence", sa.Float, nullable=False),
        sa.Column("student_ms", sa.Float, nullable=False),
        sa.UniqueConstraint("request_id", "task_id", name="uq_slmstack_shadow_request_task"),
        sa.Index("ix_slmstack_shadow_task", "task_id", "id"),
    )  # fmt: skip


__all__ = ["PROMOTIONS", "SHADOW", "Promotion", "ShadowStore", "promote", "wilson_lower"]
