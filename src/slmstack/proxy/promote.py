"""Promotion: a task moves to its student only when agreement is proven, not just observed.

The gate weighs the task's last ``window`` shadowed calls (at least ``min_n`` of them),
each with the student's confidence and whether it agreed with the LLM. It looks for the
cascade threshold ``t``: the student answers the calls it is at least ``t`` confident
on, the LLM the rest. For each candidate ``t`` (each confidence seen), the ``n`` calls at
or above it of which ``k`` agreed give the Wilson score interval's lower bound on the
agreement rate, at one-sided ``confidence``; the lowest ``t`` (the most calls answered
locally) whose bound reaches ``min_agreement`` with at least ``min_n_above`` calls above
it wins, and the task is promoted with that threshold and its coverage (the share of
shadowed calls at or above it). None: not promoted.

Why a bound and not the point estimate: a student that agreed on 19 calls of 20 (95%)
at a 0.9 bar has a lower bound of 0.80 at 95% confidence, so 20 calls do not show it yet,
while 187 agreeing calls in 200 (93.5%) do. Why Wilson rather than the normal
approximation: it stays inside [0, 1] and keeps its coverage near k = n, which is where a
good student is; it is close to the exact Clopper-Pearson bound at these sizes and needs
no beta quantile (no scipy in the core). Why ``min_n_above``: a threshold with a handful
of calls above it would pass on luck. What it costs: choosing the best of many
thresholds makes the bound a little optimistic (the best of several tries), which is one
reason the served task stays audited (:mod:`slmstack.proxy.serving` demotes it when the
audits' *upper* bound falls under the bar).

Each decision is one row of ``slmstack_promotions`` (promoted or not, with n, k, the
bound, and the threshold and coverage when promoted), so the history of a task says when
and on what evidence it changed hands; the proxy serves the latest one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from slmstack.errors import ConfigError
from slmstack.proxy.db import insert_new, open_tables
from slmstack.proxy.shadow import ShadowRow
from slmstack.proxy.wilson import wilson_lower, wilson_upper

SHADOW = "slmstack_shadow"
PROMOTIONS = "slmstack_promotions"


@dataclass(frozen=True)
class Promotion:
    """One gate decision for a task.

    Attributes:
        n, agreed, lower_bound: the evidence: the calls weighed (at or above the
            threshold, when promoted), how many agreed, and the bound on their agreement.
        threshold: the student answers calls it is at least this confident on (the rest
            go to the LLM); ``None`` when not promoted.
        coverage: the share of shadowed calls at or above ``threshold``.
        student: the student whose comparisons were weighed (its ``student_id``), the
            only one the proxy serves the task with; ``None``: any (an older decision).
    """

    task_id: str
    at: datetime
    promoted: bool
    n: int
    agreed: int
    lower_bound: float
    min_agreement: float
    confidence: float
    reason: str
    threshold: float | None = None
    coverage: float | None = None
    student: str | None = None


_DEMOTED = "demoted:"  # how a demotion's reason starts


class ShadowStore:
    """The shadow comparisons and promotion decisions, in the proxy's database."""

    def __init__(self, url: str, *, create: bool = True):
        self.url = url
        self._engine, self._shadow = open_tables(
            url, _define, create=create, what="shadow comparisons",
            hint="; if it is that one, no task was shadowed yet: run the proxy with the "
                 "task's student beside the LLM first (slmstack proxy --tasks tasks.json "
                 "--shadow TASK=DIR)",
        )  # fmt: skip
        self._promotions = self._shadow.metadata.tables[PROMOTIONS]

    def insert(self, rows: Iterable[ShadowRow]) -> int:
        """Write shadow rows (one per call and task; stored ones are skipped)."""
        values = [{f.name: getattr(r, f.name) for f in fields(ShadowRow)} for r in rows]
        return insert_new(self._engine, self._shadow, values, ["request_id", "task_id"])

    def agreements(self, task_id: str, *, window: int) -> list[bool]:
        """The agreement of the task's last ``window`` compared calls (any kind), oldest first."""
        import sqlalchemy as sa

        t = self._shadow.c
        query = (sa.select(t.agree).where(t.task_id == task_id)
                 .order_by(t.id.desc()).limit(window))  # fmt: skip
        with self._engine.connect() as conn:
            return [bool(r[0]) for r in conn.execute(query)][::-1]

    def calls(
        self, task_id: str, *, window: int, kind: str = "shadow", since: datetime | None = None,
        student: str | None = None) -> list[tuple[float, bool]]:  # fmt: skip
        """``(student confidence, agreed)`` of the task's last ``window`` rows of ``kind``.

        Args:
            task_id: the task.
            window: how many of its latest rows, at most (oldest first).
            kind: ``shadow`` (the LLM answered, the student was asked beside it),
                ``cascade`` (a served task's call under its threshold) or ``audit`` (a
                student's answer checked with the LLM afterwards).
            since: only calls that arrived at or after this time.
            student: only this student's comparisons (``None``: any student's).
        """
        import sqlalchemy as sa

        t = self._shadow.c
        query = (sa.select(t.student_confidence, t.agree).where(t.task_id == task_id)
                 .where(t.kind == kind).order_by(t.id.desc()).limit(window))  # fmt: skip
        if since is not None:
            query = query.where(t.at >= since)
        if student is not None:
            query = query.where(t.student == student)
        with self._engine.connect() as conn:
            return [(float(r[0]), bool(r[1])) for r in conn.execute(query)][::-1]

    def latest_student(self, task_id: str) -> str | None:
        """The student of the task's latest shadow comparison (``None``: none yet)."""
        import sqlalchemy as sa

        t = self._shadow.c
        mine = sa.select(t.student).where(t.task_id == task_id, t.kind == "shadow")
        with self._engine.connect() as conn:
            found = conn.execute(mine.order_by(t.id.desc()).limit(1)).scalar()
            return None if found is None else str(found)

    def record(self, decision: Promotion) -> None:
        """Store a decision."""
        values = {f.name: getattr(decision, f.name) for f in fields(Promotion)}
        with self._engine.begin() as conn:
            conn.execute(self._promotions.insert(), [values])

    def latest(self) -> dict[str, Promotion]:
        """Each task's latest decision, by task id."""
        import sqlalchemy as sa

        t = self._promotions.c
        last = sa.select(sa.func.max(t.id)).group_by(t.task_id).scalar_subquery()
        query = sa.select(self._promotions).where(t.id.in_(last))
        names = [f.name for f in fields(Promotion)]
        with self._engine.connect() as conn:
            rows = [{k: r._mapping[k] for k in names} for r in conn.execute(query)]
        for row in rows:
            if row["at"].tzinfo is None:  # SQLite drops the zone; every time is UTC
                row["at"] = row["at"].replace(tzinfo=UTC)
        return {row["task_id"]: Promotion(**row) for row in rows}

    def task_ids(self) -> set[str]:
        """Every task with a shadow comparison or a promotion decision."""
        import sqlalchemy as sa

        with self._engine.connect() as conn:
            shadowed = conn.execute(sa.select(self._shadow.c.task_id).distinct()).scalars()
            decided = conn.execute(sa.select(self._promotions.c.task_id).distinct()).scalars()
            return {str(t) for t in [*shadowed, *decided]}

    def demoted_at(self, task_id: str) -> datetime | None:
        """When ``task_id`` was last demoted (:func:`demote`), if ever."""
        import sqlalchemy as sa

        t = self._promotions.c
        demotions = (t.task_id == task_id, t.reason.like(_DEMOTED + "%"))
        query = sa.select(sa.func.max(t.at)).where(*demotions)
        with self._engine.connect() as conn:
            at = conn.execute(query).scalar()
        return None if at is None else (at if at.tzinfo else at.replace(tzinfo=UTC))

    def promoted_since(self, task_id: str) -> datetime | None:
        """When the task's current spell with its student began; ``None``: not promoted.

        A spell is the unbroken run of promotions of one student that ends with the latest
        decision: ``promote`` run again on a served task (a daily job) re-decides its
        threshold, but its audits still count from the spell's first promotion, so that
        failing audits short of ``demote_min_n`` are not forgotten at each re-run.
        """
        import sqlalchemy as sa

        t = self._promotions.c
        query = (sa.select(t.at, t.promoted, t.student).where(t.task_id == task_id)
                 .order_by(t.id.desc()))  # fmt: skip
        since = None
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        for at, promoted, student in rows:
            if not promoted or student != rows[0].student:
                break
            since = at
        return None if since is None else (since if since.tzinfo else since.replace(tzinfo=UTC))

    def promoted(self, task_id: str) -> bool:
        """Whether the task's latest decision promoted it."""
        decision = self.latest().get(task_id)
        return decision is not None and decision.promoted


@dataclass(frozen=True)
class Threshold:
    """A cascade threshold the gate accepts, and its evidence."""

    threshold: float
    n: int  # calls at or above it
    agreed: int
    lower_bound: float
    coverage: float


def choose_threshold(
    calls: Sequence[tuple[float, bool]],
    *,
    min_agreement: float,
    confidence: float = 0.95,
    min_n_above: int = 50,
) -> tuple[Threshold | None, Threshold | None]:
    """``(chosen, best)``: the lowest accepted threshold, and the candidate with the best bound.

    Each confidence in ``calls`` is a candidate; the calls at or above it must number
    ``min_n_above`` or more, and the lower bound of their agreement must reach
    ``min_agreement`` (see the module). ``chosen`` is ``None`` when no candidate passes;
    ``best`` (for the reason of a refusal) is ``None`` when none has enough calls.

    Example:
        >>> calls = [(0.9, True)] * 60 + [(0.3, False)] * 40
        >>> choose_threshold(calls, min_agreement=0.9)[0].threshold
        0.9
    """
    ranked = sorted(calls, key=lambda c: -c[0])
    total = len(ranked)
    chosen = best = None
    k = 0
    for i, (conf, agree) in enumerate(ranked):
        k += agree
        n = i + 1
        if n < total and ranked[n][0] == conf:
            continue  # a threshold takes every call of its confidence
        if n < min_n_above:
            continue
        bound = wilson_lower(k, n, confidence)
        here = Threshold(conf, n, k, bound, n / total)
        if best is None or bound > best.lower_bound:
            best = here
        if bound >= min_agreement:
            chosen = here  # later candidates are lower thresholds: the last one passing wins
    return chosen, best


def promote(
    store: ShadowStore,
    task_id: str,
    *,
    min_n: int = 200,
    min_n_above: int = 50,
    min_agreement: float = 0.9,
    confidence: float = 0.95,
    window: int = 2000,
) -> Promotion:
    """Decide (and record) whether ``task_id`` moves to its student, and its threshold.

    Only ``shadow`` rows are weighed: the calls of a served task that went to the LLM
    (``cascade``) are the ones its student was unsure of, a biased sample. After a
    demotion only the calls shadowed since count: the evidence before it is what the
    student then failed in service. Only the latest shadowed student's calls count: an
    earlier student's agreement says nothing of the one the proxy now runs.

    Raises:
        ConfigError: a parameter is out of range.
    """
    if not 0 < min_agreement < 1 or not 0.5 < confidence < 1:
        raise ConfigError(f"min_agreement must be in (0, 1) and confidence in (0.5, 1); got "
                          f"{min_agreement} and {confidence}")  # fmt: skip
    if min_n < 1 or window < min_n:
        raise ConfigError(f"need 1 <= min_n <= window; got min_n={min_n}, window={window}")
    if not 1 <= min_n_above <= window:
        raise ConfigError(f"min_n_above must be within 1..window ({window}); got {min_n_above}")
    since = store.demoted_at(task_id)
    student = store.latest_student(task_id)
    seen = store.calls(task_id, window=window, since=since, student=student)
    n, k = len(seen), sum(a for _, a in seen)
    bound = wilson_lower(k, n, confidence)
    at = datetime.now(UTC)
    chosen, best = choose_threshold(seen, min_agreement=min_agreement, confidence=confidence,
                                    min_n_above=min_n_above)  # fmt: skip
    if n < min_n:
        after = "" if since is None else f" since its demotion at {since:%Y-%m-%d %H:%M} UTC"
        of = f" of its student {student}" if student else ""
        reason = (f"{n} shadowed calls{of}{after}, fewer than the {min_n} the gate needs; keep "
                  "the proxy shadowing this task")  # fmt: skip
    elif chosen is None:
        if best is None:
            reason = (f"{n} shadowed calls, fewer than the {min_n_above} the gate needs above "
                      "a threshold (min_n_above)")  # fmt: skip
        else:
            reason = (f"agreement {k}/{n}: no threshold reaches {min_agreement}; the best, "
                      f"confidence >= {best.threshold:.3f}, has {best.agreed}/{best.n} whose "
                      f"lower bound {best.lower_bound:.3f} at {confidence:.0%} is under "
                      "it")  # fmt: skip
    else:
        decision = Promotion(
            task_id, at, True, chosen.n, chosen.agreed, chosen.lower_bound, min_agreement,
            confidence,
            f"at confidence >= {chosen.threshold:.3f} ({chosen.coverage:.0%} of {n} calls), "
            f"agreement {chosen.agreed}/{chosen.n}: its lower bound {chosen.lower_bound:.3f} at "
            f"{confidence:.0%} reaches {min_agreement}",
            chosen.threshold, chosen.coverage, student,
        )  # fmt: skip
        store.record(decision)
        return decision
    decision = Promotion(task_id, at, False, n, k, bound, min_agreement, confidence, reason,
                         student=student)  # fmt: skip
    store.record(decision)
    return decision


def demote(store: ShadowStore, task_id: str, reason: str) -> Promotion:
    """Record that ``task_id`` goes back to the LLM (and shadowing), for ``reason``."""
    last = store.latest().get(task_id)
    decision = Promotion(
        task_id, datetime.now(UTC), False, 0, 0, 0.0, last.min_agreement if last else 0.0,
        last.confidence if last else 0.0, f"{_DEMOTED} {reason}",
    )  # fmt: skip
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
        sa.Column("threshold", sa.Float),  # added with serving: older rows have none
        sa.Column("coverage", sa.Float),
        sa.Column("student", sa.String(64)),  # added with student ids: older rows have none
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
        # shadow | cascade | audit; rows older than serving were all shadow rows
        sa.Column("kind", sa.String(8), nullable=False, server_default="shadow"),
        # the student's id; rows older than student ids have "" (one student, unknown)
        sa.Column("student", sa.String(64), nullable=False, server_default=""),
        sa.UniqueConstraint("request_id", "task_id", name="uq_slmstack_shadow_request_task"),
        sa.Index("ix_slmstack_shadow_task", "task_id", "id"),
    )  # fmt: skip


__all__ = [
    "PROMOTIONS", "SHADOW", "Promotion", "ShadowStore", "Threshold", "choose_threshold",
    "demote", "promote", "wilson_lower", "wilson_upper",
]  # fmt: skip
