"""The escalation inbox over HTTP: list, show, claim and resolve hand-off packets.

The same four actions as ``slmstack inbox`` (``cli/inbox.py``), on the same
:class:`~slmstack.workflows.inbox.Inbox` (``app.state.serve.inbox``), behind the same keys
as every route. The database calls block, so the routes are plain functions, which FastAPI
runs in its thread pool rather than on the event loop.

Statuses: 404 for a packet id the inbox does not hold (or a server without an inbox), 409
when the packet is not in a state the action allows (claiming a claimed packet, resolving
a resolved one, or one someone else has claimed without ``force``), 422 for bad input.

Example:
    ``curl -H "Authorization: Bearer $KEY" -d '{"who": "ana"}' localhost:8000/v1/inbox/3/claim``
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from slmstack.errors import ConfigError, InboxError
from slmstack.workflows.inbox import Inbox
from slmstack.workflows.packet import MAX_ID, NAME_LIMIT, NOTE_LIMIT, Packet, check_text

router = APIRouter(prefix="/v1/inbox", tags=["inbox"])


def _storable(value: str) -> str:
    """Text a database can hold (see :func:`~slmstack.workflows.packet.check_text`)."""
    return check_text(value, "text", NOTE_LIMIT)


Who = Annotated[str, Field(max_length=NAME_LIMIT), AfterValidator(_storable)]
Note = Annotated[str, Field(max_length=NOTE_LIMIT), AfterValidator(_storable)]
PacketId = Annotated[int, Path(ge=1, le=MAX_ID, description="The packet's id.")]


class Problem(BaseModel):
    """An error answer: what went wrong and how to fix it."""

    detail: str


class PacketSummary(BaseModel):
    """A hand-off packet without its trace (see :class:`~slmstack.workflows.inbox.Packet`)."""

    id: int
    status: Literal["open", "claimed", "resolved"]
    workflow: str
    text: str
    reason: str  # the escalation step's reason
    why: str  # the decision behind it
    intent: str | None = None
    intent_confidence: float | None = None
    sentiment: str | None = None
    entities: list[dict[str, Any]] = Field(default_factory=list)
    summary: str | None = None
    key: str | None = None  # idempotency key of the run that escalated
    created_at: datetime | None = None
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None


class PacketDetail(PacketSummary):
    """A hand-off packet with the trace of the run that escalated."""

    trace: list[dict[str, Any]] = Field(default_factory=list)


class PacketList(BaseModel):
    """Packets oldest first, and how many of that status the inbox holds in all."""

    packets: list[PacketSummary]
    total: int


class ClaimRequest(BaseModel):
    """Who takes the packet (with API keys: the key's name, unless the key acts for others)."""

    model_config = ConfigDict(extra="forbid")
    who: Who | None = None


class ResolveRequest(BaseModel):
    """How a packet was closed."""

    model_config = ConfigDict(extra="forbid")
    note: Note  # what was done
    who: Who | None = None  # who resolved it; without it the packet keeps its claimant
    force: bool = False  # resolve a packet someone other than `who` has claimed


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such packet, or no inbox on this server."},
}
_ACTS_AS_ITSELF: dict[int | str, dict[str, Any]] = {
    403: {"model": Problem, "description": "The key acts as itself: another `who`, or `force`."},
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "The packet's status does not allow this."},
}


def _inbox(request: Request) -> Inbox:
    inbox: Inbox | None = request.app.state.serve.inbox
    if inbox is None:
        raise HTTPException(
            404,
            "this server has no escalation inbox; name one under `inbox:` in the serve "
            "config (e.g. sqlite:///inbox.db), or serve a workflow that has one",
        )
    return inbox


def _existing(inbox: Inbox, packet_id: int) -> Packet:
    """The packet, or 404. Packets are never deleted, so one found here exists after."""
    try:
        return inbox.get(packet_id)
    except ConfigError:
        raise HTTPException(
            404, f"no packet with id {packet_id}; list them with GET /v1/inbox?status=all"
        ) from None


def _acting(request: Request, who: str | None, force: bool) -> str | None:
    """The name an inbox action is taken under.

    With API keys, a key acts as its own name: ``who`` may only repeat it, and ``force``
    is refused, unless the key is listed under ``auth.inbox_act_for_others``. Without
    keys, ``who`` is taken as given.
    """
    key: str | None = getattr(request.state, "api_key", None)
    config = request.app.state.serve.config
    if key is None or config.auth is None or key in config.auth.inbox_act_for_others:
        return who
    if (who is not None and who != key) or force:
        what = f'"who": {who!r}' if who is not None and who != key else '"force": true'
        raise HTTPException(
            403,
            f"the key {key!r} acts as itself in the inbox, so {what} is refused; leave it "
            "out, or list the key under `auth.inbox_act_for_others` in the serve config",
        )
    return key


def _fields(packet: Packet) -> dict[str, Any]:
    return {f.name: getattr(packet, f.name) for f in fields(packet)}


def _detail(packet: Packet) -> PacketDetail:
    return PacketDetail.model_validate(_fields(packet))


@router.get("", summary="List packets", response_model=PacketList)
def list_packets(
    request: Request,
    status: Annotated[
        Literal["open", "claimed", "resolved", "all"], Query(description="A status, or all.")
    ] = "open",
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 50,
    after: Annotated[
        int, Query(ge=0, le=MAX_ID, description="Only ids above this: the last id of a page.")
    ] = 0,
) -> PacketList:
    """Packets oldest first, open ones unless ``status`` says otherwise; no traces.

    To page, pass the last id of the page before as ``after``.
    """
    inbox = _inbox(request)
    wanted = None if status == "all" else status
    packets = inbox.list(status=wanted, limit=limit, after=after)
    return PacketList(
        packets=[PacketSummary.model_validate(_fields(p)) for p in packets],
        total=inbox.count(status=wanted),
    )


@router.get("/{packet_id}", summary="Show a packet", responses=_ERRORS)
def show_packet(request: Request, packet_id: PacketId) -> PacketDetail:
    """Everything about one packet: text, findings, why it escalated, the trace."""
    return _detail(_existing(_inbox(request), packet_id))


@router.post(
    "/{packet_id}/claim", summary="Claim a packet", responses=_ERRORS | _CONFLICT | _ACTS_AS_ITSELF
)
def claim_packet(request: Request, packet_id: PacketId, body: ClaimRequest) -> PacketDetail:
    """Take an open packet; 409 when it is claimed or resolved already."""
    inbox = _inbox(request)
    who = _acting(request, body.who, False)
    if who is None:
        raise HTTPException(422, 'say who takes the packet: {"who": "NAME"}')
    _existing(inbox, packet_id)
    try:
        return _detail(inbox.claim(packet_id, who))
    except ConfigError as exc:  # the one conditional UPDATE found it no longer open
        raise HTTPException(409, str(exc)) from None


@router.post(
    "/{packet_id}/resolve",
    summary="Resolve a packet",
    responses=_ERRORS | _CONFLICT | _ACTS_AS_ITSELF,
)
def resolve_packet(request: Request, packet_id: PacketId, body: ResolveRequest) -> PacketDetail:
    """Close an open or claimed packet with a note.

    409 when it is resolved already, or claimed by someone other than ``who`` and
    ``force`` is not set.
    """
    inbox = _inbox(request)
    who = _acting(request, body.who, body.force)
    _existing(inbox, packet_id)
    try:
        return _detail(inbox.resolve(packet_id, body.note, who=who, force=body.force))
    except ConfigError as exc:  # resolved already
        raise HTTPException(409, str(exc)) from None
    except InboxError:  # claimed by someone else
        current = inbox.get(packet_id)
        raise HTTPException(
            409,
            f"packet {packet_id} is claimed by {current.claimed_by!r}, not {who!r}; "
            'resolve it anyway with "force": true, or leave it to them',
        ) from None
