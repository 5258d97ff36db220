"""A hand-off packet, and where the inbox of packets lives by default."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

from slmstack.errors import ConfigError, DataError

PacketStatus = Literal["open", "claimed", "resolved"]
_ENV = "SLMSTACK_INBOX_URL"
_DEFAULT = "sqlite:///slmstack-inbox.db"


MAX_ID = 2**63 - 1  # a database integer; a larger id would overflow, not be missing
NAME_LIMIT = 200  # characters of a name (who claims, resolves, labels): the column's width
NOTE_LIMIT = 100_000  # characters of a resolution note


def check_text(value: str, what: str, limit: int) -> str:
    """``value``, or a DataError: blank, over ``limit`` characters, or not storable text.

    PostgreSQL refuses NUL characters, and a lone surrogate is not UTF-8.
    """
    if not value.strip():
        raise DataError(f"the {what} is empty; write something")
    if len(value) > limit:
        raise DataError(f"the {what} has {len(value)} characters; keep it to {limit} at most")
    if "\x00" in value:
        raise DataError(f"the {what} holds a NUL character; remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"the {what} is not valid Unicode (a lone surrogate)") from None
    return value


def check_packet_id(packet_id: int) -> int:
    """``packet_id``, or a ConfigError when no packet can have it."""
    if not 1 <= packet_id <= MAX_ID:
        raise ConfigError(f"packet {packet_id} cannot exist: ids run from 1 up; see `inbox list`")
    return packet_id


def default_url() -> str:
    """``$SLMSTACK_INBOX_URL``, else ``sqlite:///slmstack-inbox.db`` in the working folder."""
    return os.environ.get(_ENV) or _DEFAULT


def shown_url(url: str) -> str:
    """``url`` with its password masked, for messages and terminal output."""
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError
    except ImportError:
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL at all: Inbox() reports that, not the printer
        return url


@dataclass(frozen=True)
class Packet:
    """What a human needs to take over a request without asking the customer again.

    Attributes:
        workflow: the workflow that escalated.
        text: the original text.
        reason: the escalation step's reason (``"complaint"``).
        why: the decision behind it (``"intent confidence 0.41 < threshold 0.55"``).
        intent, intent_confidence, sentiment, entities, summary: what the skills found.
        trace: the run's trace (JSON).
        key: idempotency key; a second packet with the same key is not stored.
        id, status, created_at, claimed_by, claimed_at, resolved_at, resolution: queue state.
    """

    workflow: str
    text: str
    reason: str
    why: str
    intent: str | None = None
    intent_confidence: float | None = None
    sentiment: str | None = None
    entities: tuple[dict[str, str], ...] = ()
    summary: str | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)
    key: str | None = None
    id: int | None = None
    status: PacketStatus = "open"
    created_at: datetime | None = None
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["entities"] = list(self.entities)
        for key in ("created_at", "claimed_at", "resolved_at"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


__all__ = [
    "MAX_ID",
    "NAME_LIMIT",
    "NOTE_LIMIT",
    "Packet",
    "PacketStatus",
    "check_packet_id",
    "check_text",
    "default_url",
    "shown_url",
]
