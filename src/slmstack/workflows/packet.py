"""A hand-off packet, and where the inbox of packets lives by default."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

PacketStatus = Literal["open", "claimed", "resolved"]
_ENV = "SLMSTACK_INBOX_URL"
_DEFAULT = "sqlite:///slmstack-inbox.db"


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


__all__ = ["Packet", "PacketStatus", "default_url", "shown_url"]
