"""The agent's side of the escalation inbox: search, replies, and labelled examples.

The method: two more tables in the inbox's own database, ``slmstack_replies`` (what an
agent wrote back) and ``slmstack_examples`` (the label an agent says a packet's text
should have had, per task), so that a packet, what was said about it and its corrected
label live in one place and one export reads them. A packet holds at most one example
per task: labelling it again replaces the label (the last agent's word wins, and a
mislabel is mended by labelling again, not by editing the database).

This closes the loop from real traffic to training: :meth:`InboxFeedback.export` writes
the examples of a task as ``text,label`` JSONL, which ``slmstack train classify DATA
--resume SKILL`` continues training on (optionally mixed with a sample of the original
training data, so the model does not drift away from it).

Search reads the packets table by reflection rather than through :class:`Inbox`, whose
table is its own: filters (status, workflow, a substring of the text, reason or summary)
and paging run in SQL, newest first, so a long inbox is never loaded whole.

Example:
    >>> feedback = InboxFeedback(Inbox("sqlite:///inbox.db"))  # doctest: +SKIP
    >>> feedback.save_example(3, "refund", who="ana")  # doctest: +SKIP
    >>> feedback.export("examples.jsonl")  # doctest: +SKIP
    1
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slmstack.db_create import create_racing
from slmstack.errors import ConfigError, DataError, InboxError
from slmstack.sqlite_files import use_wal
from slmstack.workflows.inbox import Inbox
from slmstack.workflows.packet import NAME_LIMIT, Packet, PacketStatus, check_text

TASK = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # intent, sentiment, faq, ...
DEFAULT_TASK = "intent"
_PACKETS = "slmstack_packets"


@dataclass(frozen=True)
class Reply:
    """What an agent wrote back to the customer about a packet."""

    id: int
    packet_id: int
    who: str
    text: str
    created_at: datetime


@dataclass(frozen=True)
class LabelledExample:
    """A packet's text with the label an agent gave it, for one ``task``."""

    id: int
    packet_id: int
    task: str
    text: str
    label: str
    who: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The JSONL row of the training export: ``text`` and ``label`` first."""
        return {
            "text": self.text,
            "label": self.label,
            "task": self.task,
            "packet_id": self.packet_id,
            "labelled_by": self.who,
            "labelled_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class PacketPage:
    """One page of a search: the packets, how many match in all, and how many are newer."""

    packets: list[Packet]
    total: int
    newer: int = 0


def _utc(value: datetime) -> datetime:
    # SQLite drops the time zone; every time here was written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _lower(value: object) -> object:
    """``lower()`` for SQLite, over all of Unicode as PostgreSQL's is."""
    return value.lower() if isinstance(value, str) else value


def check_task(task: str) -> str:
    """``task`` when it is a task name (``intent``, ``faq``); else a ConfigError."""
    if not TASK.match(task):
        raise ConfigError(
            f"{task!r} is not a task name; use lower-case letters, digits and _ "
            f"(e.g. {DEFAULT_TASK}, sentiment, faq)"
        )
    return task


class InboxFeedback:
    """Search, replies and labelled examples, in the database of ``inbox``.

    Args:
        inbox: the inbox whose packets these are; its database gets the two tables.

    Raises:
        InboxError: the database cannot be opened or written.
    """

    def __init__(self, inbox: Inbox):
        import sqlalchemy as sa

        self.inbox = inbox
        if inbox.url == "sqlite:///:memory:":
            raise ConfigError(
                "an in-memory inbox cannot hold replies and examples (each connection sees "
                "its own database); use a file, sqlite:///inbox.db"
            )
        self._engine = sa.create_engine(inbox.url)
        use_wal(self._engine)
        self._lower: Any = sa.func.lower
        if self._engine.dialect.name == "sqlite":
            # SQLite's lower() folds ASCII only, so "Ü" in a packet would never match the
            # query lowered here: search folds with Python's str.lower on both sides.
            @sa.event.listens_for(self._engine, "connect")
            def _fold(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.create_function("slmstack_lower", 1, _lower, deterministic=True)

            self._lower = sa.func.slmstack_lower
        meta = sa.MetaData()
        self._replies = sa.Table(
            "slmstack_replies",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("packet_id", sa.Integer, nullable=False, index=True),
            sa.Column("who", sa.String(200), nullable=False),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        )
        self._examples = sa.Table(
            "slmstack_examples",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("packet_id", sa.Integer, nullable=False),
            sa.Column("task", sa.String(40), nullable=False),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("label", sa.String(200), nullable=False),
            sa.Column("who", sa.String(200), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.UniqueConstraint("packet_id", "task", name="slmstack_examples_packet_task"),
        )
        try:
            create_racing(lambda: meta.create_all(self._engine))
            self._packets = sa.Table(_PACKETS, sa.MetaData(), autoload_with=self._engine)
        except sa.exc.DatabaseError as exc:
            raise InboxError(
                f"cannot open the replies and examples of {inbox.url}: {exc.orig}; check "
                "that the inbox database may be written"
            ) from None

    # ------------------------------------------------------------------ search
    def search(
        self,
        *,
        status: PacketStatus | None = None,
        workflow: str | None = None,
        query: str | None = None,
        limit: int = 50,
        offset: int = 0,
        before: int | None = None,
        after: int | None = None,
    ) -> PacketPage:
        """Packets newest first, filtered; ``query`` is a case-insensitive substring.

        It is matched against the text, the reason, the summary and the intent. To page
        while packets arrive or change status, pass ``before`` (the last id shown: the
        next older page) or ``after`` (the first id shown: the next newer page), not an
        ``offset``, which would show a packet twice or skip one.
        """
        import sqlalchemy as sa

        t = self._packets.c
        where: list[Any] = []
        if status is not None:
            where.append(t.status == status)
        if workflow:
            where.append(t.workflow == workflow)
        if query and query.strip():
            like = "%" + query.strip().lower().replace("\\", "\\\\").replace("%", "\\%") + "%"
            like = like.replace("_", "\\_")
            where.append(
                sa.or_(*(self._lower(c).like(like, escape="\\")
                         for c in (t.text, t.reason, t.summary, t.intent)))
            )  # fmt: skip
        upward = after is not None and before is None  # the page above: nearest first
        anchor = [t.id < before] if before is not None else [t.id > after] if upward else []
        order = t.id.asc() if upward else t.id.desc()
        select = sa.select(t.id).where(*where, *anchor).order_by(order).limit(limit)
        count = sa.select(sa.func.count()).select_from(self._packets)
        with self._engine.connect() as conn:
            ids = sorted(map(int, conn.execute(select.offset(offset)).scalars()), reverse=True)
            total = int(conn.execute(count.where(*where)).scalar() or 0)
            newer = conn.execute(count.where(*where, t.id > ids[0])).scalar() if ids else 0
        return PacketPage([self.inbox.get(i) for i in ids], total, int(newer or 0))

    def counts(self) -> dict[str, int]:
        """How many packets of each status (every status present, zero included)."""
        import sqlalchemy as sa

        t = self._packets.c
        found = {"open": 0, "claimed": 0, "resolved": 0}
        query = sa.select(t.status, sa.func.count()).group_by(t.status)
        with self._engine.connect() as conn:
            for status, n in conn.execute(query):
                found[str(status)] = int(n)
        return found

    def workflows(self) -> list[str]:
        """The workflows that have filed packets, sorted."""
        import sqlalchemy as sa

        t = self._packets.c
        with self._engine.connect() as conn:
            return sorted(str(w) for w in conn.execute(sa.select(t.workflow).distinct()).scalars())

    # ------------------------------------------------------------------ replies
    def reply(self, packet_id: int, text: str, *, who: str) -> Reply:
        """Record what ``who`` wrote back about packet ``packet_id``.

        Raises:
            ConfigError: no such packet. DataError: an empty or oversized reply or name.
        """
        import sqlalchemy as sa

        self.inbox.get(packet_id)  # raises for an unknown id
        text = check_text(text, "reply", 20_000)
        who = check_text(who, "name", NAME_LIMIT).strip()
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            result = conn.execute(
                sa.insert(self._replies).values(
                    packet_id=packet_id, who=who, text=text, created_at=now
                )
            )
            new_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        return Reply(new_id, packet_id, who, text, now)

    def replies(self, packet_id: int) -> list[Reply]:
        """The replies to a packet, oldest first."""
        import sqlalchemy as sa

        t = self._replies
        query = sa.select(t).where(t.c.packet_id == packet_id).order_by(t.c.id)
        with self._engine.connect() as conn:
            return [
                Reply(r.id, r.packet_id, r.who, r.text, _utc(r.created_at))
                for r in conn.execute(query)
            ]

    # ------------------------------------------------------------------ examples
    def save_example(
        self, packet_id: int, label: str, *, who: str, task: str = DEFAULT_TASK
    ) -> LabelledExample:
        """Save packet ``packet_id``'s text with ``label`` for ``task``; replaces an earlier one.

        Raises:
            ConfigError: no such packet, or a bad task name. DataError: an empty label,
                or an empty or oversized name.
        """
        import sqlalchemy as sa

        check_task(task)
        label = check_text(label, "label", NAME_LIMIT).strip()
        who = check_text(who, "name", NAME_LIMIT).strip()
        packet = self.inbox.get(packet_id)
        now = datetime.now(UTC)
        t = self._examples
        values = {"text": packet.text, "label": label, "who": who, "created_at": now}
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.update(t).where(t.c.packet_id == packet_id, t.c.task == task).values(**values)
            ).rowcount
            if not done:
                conn.execute(sa.insert(t).values(packet_id=packet_id, task=task, **values))
        return next(e for e in self.examples(packet_id=packet_id) if e.task == task)

    def examples(
        self, *, task: str | None = None, packet_id: int | None = None
    ) -> list[LabelledExample]:
        """Labelled examples in the order they were first saved, optionally of one task."""
        import sqlalchemy as sa

        t = self._examples
        query = sa.select(t).order_by(t.c.id)
        if task is not None:
            query = query.where(t.c.task == check_task(task))
        if packet_id is not None:
            query = query.where(t.c.packet_id == packet_id)
        with self._engine.connect() as conn:
            return [
                LabelledExample(
                    r.id, r.packet_id, r.task, r.text, r.label, r.who, _utc(r.created_at)
                )
                for r in conn.execute(query)
            ]

    def export(
        self, path: str | Path, *, task: str = DEFAULT_TASK, mix_with: str | Path | None = None
    ) -> int:
        """Write the examples of ``task`` as JSONL (``text``, ``label``, provenance).

        Args:
            path: the file to write (replaced).
            task: which examples (``intent`` by default).
            mix_with: a labelled CSV, TSV or JSONL file (the skill's original training
                data, or a sample of it) whose rows are written after the examples, so
                that resumed training keeps what the skill knew.

        Returns:
            The rows written.

        Raises:
            DataError: no examples of ``task`` yet, or ``mix_with`` is unreadable.
        """
        from slmstack.data.readers import read_examples

        out = Path(path)
        _check_export_target(out, mix_with)
        found = self.examples(task=task)
        if not found:
            tasks = sorted({e.task for e in self.examples()})
            saved = f"; examples exist for: {', '.join(tasks)}" if tasks else ""
            raise DataError(
                f"no labelled {task!r} examples in {self.inbox.url} yet{saved}. Resolve "
                "packets with a corrected label in the console (or pass --task)"
            )
        rows = [e.to_dict() for e in found]
        if mix_with is not None:
            old = read_examples(mix_with, validate=False)
            rows += [{"text": ex.text, "label": ex.label, "source": ex.source} for ex in old]
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.writing")
        with tmp.open("w", encoding="utf-8") as fh:  # written aside, then put in place
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp.replace(out)
        return len(rows)


def _check_export_target(out: Path, mix_with: str | Path | None) -> None:
    """Refuse to replace the training data, or any file an export did not write."""
    if mix_with is not None and out.resolve() == Path(mix_with).resolve():
        raise DataError("is also --mix-with; write the examples to another file", path=out)
    if out.is_dir():
        raise DataError("is a folder; pass a file such as examples.jsonl", path=out)
    if out.suffix.lower() not in (".jsonl", ".ndjson"):
        raise DataError(
            "is not a .jsonl file; the examples are written as JSON lines, which "
            "`train classify` reads by that suffix. Pass a path such as examples.jsonl",
            path=out,
        )
    if out.is_file() and out.stat().st_size:
        with out.open("rb") as fh:
            first = fh.readline()
        try:
            row = json.loads(first)
        except ValueError:
            row = None
        # an export starts with a labelled packet; training data has text and label only
        if not (
            isinstance(row, dict) and {"text", "label", "packet_id", "labelled_by"} <= row.keys()
        ):
            raise DataError(
                "exists and is not an examples file this command wrote, so it is not "
                "replaced; pass another --out",
                path=out,
            )


__all__ = [
    "DEFAULT_TASK",
    "InboxFeedback",
    "LabelledExample",
    "PacketPage",
    "Reply",
    "check_task",
]
