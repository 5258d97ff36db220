"""The escalation inbox: hand-off packets in SQLite by default, PostgreSQL by URL.

One SQLAlchemy table (``sqlite:///inbox.db`` or ``postgresql+psycopg://user@host/db``).
Packets move ``open → claimed → resolved`` by single conditional UPDATEs, so two agents
cannot claim the same packet.

Example:
    >>> Inbox("sqlite:///inbox.db").claim(1, "ana")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slmstack.db_create import create_racing
from slmstack.errors import ConfigError, DataError, InboxError, MissingDependencyError
from slmstack.sqlite_files import make_folder, use_wal
from slmstack.workflows.packet import (
    NAME_LIMIT,
    NOTE_LIMIT,
    Packet,
    PacketStatus,
    check_packet_id,
    check_text,
    default_url,
    shown_url,
)


class Inbox:
    """A queue of hand-off packets behind one database URL.

    Args:
        url: ``sqlite:///PATH`` or ``postgresql+psycopg://USER@HOST/DB``.
        create: make the SQLite file, its folder and the table when missing (what a
            workflow does when it first escalates). Readers such as ``slmstack inbox
            list`` pass ``False``, so that a mistyped path is an error, not a new empty
            inbox.

    Raises:
        InboxError: the database cannot be opened, is not a SQLite database, or (with
            ``create=False``) does not exist or holds no inbox.
    """

    def __init__(self, url: str, *, create: bool = True):
        try:
            import sqlalchemy as sa
        except ImportError as exc:
            raise MissingDependencyError("sqlalchemy", "workflows", "The escalation inbox") from exc
        self.url = url
        file = None
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            file = Path(url.removeprefix("sqlite:///"))
            if create:
                make_folder(file, "inbox", InboxError)
            else:
                _check_exists(file)
        try:  # the dialect first: another's driver is no fix (pip install 'slmstack[postgres]')
            backend = sa.engine.make_url(url).get_backend_name()
            if backend not in ("sqlite", "postgresql"):
                raise ConfigError(
                    f"the inbox runs on SQLite or PostgreSQL; {shown_url(url)} is {backend}: "
                    "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
                )
            self._engine = sa.create_engine(url)
            use_wal(self._engine)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(
                f"inbox URL {shown_url(url)!r} is not a database URL ({exc}); use "
                "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
            ) from exc
        except ModuleNotFoundError as exc:
            raise MissingDependencyError(
                exc.name or "a database driver", "postgres", f"The inbox at {shown_url(url)!r}"
            ) from exc
        meta = sa.MetaData()
        self._table = sa.Table(
            "slmstack_packets",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("key", sa.String(512), unique=True, nullable=True),
            sa.Column("workflow", sa.String(200), nullable=False),
            sa.Column("status", sa.String(16), nullable=False, index=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("why", sa.Text, nullable=False),
            sa.Column("intent", sa.String(200)),
            sa.Column("intent_confidence", sa.Float),
            sa.Column("sentiment", sa.String(200)),
            sa.Column("entities", sa.JSON, nullable=False),
            sa.Column("summary", sa.Text),
            sa.Column("trace", sa.JSON, nullable=False),
            sa.Column("claimed_by", sa.String(200)),
            sa.Column("claimed_at", sa.DateTime(timezone=True)),
            sa.Column("resolved_at", sa.DateTime(timezone=True)),
            sa.Column("resolution", sa.Text),
        )
        try:
            if create:
                create_racing(lambda: meta.create_all(self._engine))
            elif not sa.inspect(self._engine).has_table(self._table.name):
                raise InboxError(
                    f"{shown_url(url)} is a database but not an slmstack inbox (it has no "
                    f"{self._table.name!r} table); pass the inbox a workflow writes to "
                    "(its `inbox:` entry)"
                )
        except sa.exc.OperationalError as exc:
            raise InboxError(
                f"cannot open the inbox {shown_url(url)}: {exc.orig}; check the path (or "
                "server), and that you may read and write it"
            ) from None
        except sa.exc.DatabaseError as exc:
            what = f"{file}" if file is not None else shown_url(url)
            raise InboxError(
                f"{what} is not an inbox database ({exc.orig}); pass the SQLite file a "
                "workflow writes its escalations to (its `inbox:` entry)"
            ) from None

    def close(self) -> None:
        """Release the database connections (packets are committed as they are added)."""
        self._engine.dispose()

    def __enter__(self) -> Inbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, packet: Packet) -> int:
        """Store ``packet`` as open and return its id (the existing id for a known key)."""
        import sqlalchemy as sa

        row = self._new_row(packet, datetime.now(UTC))
        existing = self._id_for_key(packet.key)
        if existing is not None:
            return existing
        try:
            with self._engine.begin() as conn:
                result = conn.execute(sa.insert(self._table), row)  # a cached compiled INSERT
                return int(result.inserted_primary_key[0])  # type: ignore[index]
        except sa.exc.IntegrityError:
            # Another process filed the same key between our check and insert.
            existing = self._id_for_key(packet.key)
            if existing is None:
                raise
            return existing

    def add_many(self, packets: Sequence[Packet]) -> list[int]:
        """Store ``packets`` in one transaction and return their ids, in order.

        The same as ``[add(p) for p in packets]`` (known keys keep their ids), but one
        commit for the lot: a workflow batch files its escalations at once instead of
        paying a commit (about 1 ms on SQLite) per packet.
        """
        import sqlalchemy as sa

        if not packets:
            return []
        now = datetime.now(UTC)
        keys = [p.key for p in packets if p.key is not None]
        try:
            with self._engine.begin() as conn:
                known = self._ids_for_keys(conn, keys)
                # New packets in input order; a key seen twice in the batch is filed once.
                new: list[int] = []
                first: dict[str, int] = {}
                for i, packet in enumerate(packets):
                    if packet.key is None or (packet.key not in known and packet.key not in first):
                        new.append(i)
                        if packet.key is not None:
                            first[packet.key] = i
                rows = [self._new_row(packets[i], now) for i in new]
                # One INSERT ... RETURNING for the lot, ids in the rows' order (SQLAlchemy's
                # "insertmanyvalues": a few statements, not one per packet).
                filed: dict[int, int] = {}
                if rows:
                    stmt = sa.insert(self._table).returning(
                        self._table.c.id, sort_by_parameter_order=True
                    )
                    returned = conn.execute(stmt, rows).scalars().all()
                    filed = {i: int(pk) for i, pk in zip(new, returned, strict=True)}
                known.update({key: filed[i] for key, i in first.items()})
                return [
                    filed[i] if i in filed else known[str(p.key)] for i, p in enumerate(packets)
                ]
        except sa.exc.IntegrityError:
            # Another process filed one of the keys meanwhile: nothing was committed, so
            # file one by one, where each known key returns its existing id.
            return [self.add(p) for p in packets]

    @staticmethod
    def _new_row(packet: Packet, now: datetime) -> dict[str, Any]:
        """The columns of ``packet`` filed now as open.

        Raises:
            DataError: an entity or a trace node that is not an object (a hand-built
                packet), which every page and API reading the packet would fail on.
        """
        for part, items in (("entities", packet.entities), ("trace", packet.trace)):
            listed = isinstance(items, list | tuple)
            bad = next((x for x in items if not isinstance(x, dict)), None) if listed else items
            if not listed or bad is not None:
                raise DataError(
                    f"packet {part} must be a list of objects, as a workflow files them; got "
                    f"{bad!r:.80} in it. Build each entity and trace node as a dict"
                )
        row = packet.to_dict()
        for key in ("id", "claimed_by", "claimed_at", "resolved_at", "resolution"):
            row.pop(key)
        row.update(status="open", created_at=now)
        return row

    def _ids_for_keys(self, conn: Any, keys: Sequence[str]) -> dict[str, int]:
        import sqlalchemy as sa

        found: dict[str, int] = {}
        for at in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
            chunk = keys[at : at + 500]
            query = sa.select(self._table.c.key, self._table.c.id).where(
                self._table.c.key.in_(chunk)
            )
            found.update({str(k): int(i) for k, i in conn.execute(query)})
        return found

    def _id_for_key(self, key: str | None) -> int | None:
        import sqlalchemy as sa

        if key is None:
            return None
        with self._engine.connect() as conn:
            found = conn.execute(
                sa.select(self._table.c.id).where(self._table.c.key == key)
            ).scalar()
        return None if found is None else int(found)

    def _packet(self, row: Any) -> Packet:
        data = dict(row._mapping)
        data["entities"] = tuple(data["entities"])
        for key in ("created_at", "claimed_at", "resolved_at"):
            # SQLite drops the time zone; every time here was written in UTC.
            if data[key] is not None and data[key].tzinfo is None:
                data[key] = data[key].replace(tzinfo=UTC)
        return Packet(**data)

    def list(
        self, *, status: PacketStatus | None = None, limit: int = 50, after: int = 0
    ) -> list[Packet]:
        """Packets, oldest first, optionally of one status; at most ``limit`` (≥ 1).

        ``after``: only ids above it. To page, pass the last id of the page before.
        """
        import sqlalchemy as sa

        if limit < 1:
            raise InboxError(f"limit must be at least 1; got {limit}")
        t = self._table
        query = sa.select(t).where(t.c.id > after).order_by(t.c.id).limit(limit)
        if status is not None:
            query = query.where(self._table.c.status == status)
        with self._engine.connect() as conn:
            return [self._packet(r) for r in conn.execute(query)]

    def count(self, *, status: PacketStatus | None = None) -> int:
        """How many packets (of one status)."""
        import sqlalchemy as sa

        query = sa.select(sa.func.count()).select_from(self._table)
        if status is not None:
            query = query.where(self._table.c.status == status)
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def get(self, packet_id: int) -> Packet:
        """The packet with ``packet_id``."""
        import sqlalchemy as sa

        check_packet_id(packet_id)
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(self._table).where(self._table.c.id == packet_id)).first()
        if row is None:
            raise ConfigError(
                f"no packet with id {packet_id} in {shown_url(self.url)}; list them with "
                "`slmstack inbox list`"
            )
        return self._packet(row)

    def claim(self, packet_id: int, who: str) -> Packet:
        """Mark an open packet as taken by ``who``; refuse if someone else has it."""
        import sqlalchemy as sa

        check_packet_id(packet_id)
        who = check_text(who, "name", NAME_LIMIT).strip()
        t = self._table
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.update(t)
                .where(t.c.id == packet_id, t.c.status == "open")
                .values(status="claimed", claimed_by=who, claimed_at=datetime.now(UTC))
            ).rowcount
        if not done:
            current = self.get(packet_id)
            raise ConfigError(
                f"packet {packet_id} is {current.status}"
                + (f" by {current.claimed_by!r}" if current.claimed_by else "")
                + "; only open packets can be claimed"
            )
        return self.get(packet_id)

    def resolve(
        self, packet_id: int, resolution: str, *, who: str | None = None, force: bool = False
    ) -> Packet:
        """Close an open or claimed packet with a note of what was done.

        Args:
            packet_id: the packet.
            resolution: what was done.
            who: who resolved it; recorded as ``claimed_by``. Without it only an unclaimed
                packet can be resolved (or any, with ``force``, keeping its claimant).
            force: resolve a packet that someone other than ``who`` has claimed.

        Raises:
            DataError: the note or the name is blank, too long or not storable text.
            InboxError: the packet is claimed by someone other than ``who`` and ``force``
                is not set.
        """
        import sqlalchemy as sa

        check_packet_id(packet_id)
        check_text(resolution, "resolution note", NOTE_LIMIT)
        if who is not None:
            who = check_text(who, "name", NAME_LIMIT).strip()
        t = self._table
        values: dict[str, Any] = {
            "status": "resolved",
            "resolved_at": datetime.now(UTC),
            "resolution": resolution,
        }
        if who is not None:
            values["claimed_by"] = who
        where = [t.c.id == packet_id, t.c.status != "resolved"]
        if not force:  # one conditional UPDATE: nobody else's claim is overrun, even meanwhile
            mine = t.c.claimed_by == who if who is not None else sa.false()
            where.append(sa.or_(t.c.claimed_by.is_(None), mine))
        with self._engine.begin() as conn:
            done = conn.execute(sa.update(t).where(*where).values(**values)).rowcount
        if not done:
            current = self.get(packet_id)  # raises when it does not exist
            if current.status == "resolved":
                raise ConfigError(f"packet {packet_id} is already resolved")
            by = f"not {who!r}" if who else "and you did not say who you are"
            raise InboxError(
                f"packet {packet_id} is claimed by {current.claimed_by!r}, {by}; resolve it "
                "as them (--as NAME), anyway with --force (force=True in Python), or leave it"
            )
        return self.get(packet_id)


def _check_exists(file: Path) -> None:
    """Readers open an existing SQLite inbox only; a typo must not create a new one."""
    if not file.parent.is_dir():
        raise InboxError(
            f"inbox folder {file.parent} does not exist (from {file}); check the path, or "
            "pass --workflow FILE to read the inbox that workflow writes to"
        )
    if not file.is_file():
        what = "is a folder, not a file" if file.is_dir() else "does not exist"
        raise InboxError(
            f"inbox {file} {what}; check the path (nothing has escalated to it yet if it is "
            "right), or pass --workflow FILE to read the inbox that workflow writes to"
        )


__all__ = ["Inbox", "Packet", "PacketStatus", "default_url", "shown_url"]
