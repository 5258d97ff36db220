"""The inbox pages: list and search packets, open one, claim, reply, resolve, label.

Claim and resolve are the inbox's own single conditional UPDATEs
(:meth:`Inbox.claim`, :meth:`Inbox.resolve`), so two agents cannot claim one packet, and
a packet someone else claimed cannot be resolved from here (the API's ``force`` is for
supervisors). Resolving with a corrected label also saves the packet's text with that
label as a training example (:class:`InboxFeedback`), which ``slmstack inbox
export-examples`` and the examples page export for ``slmstack train ... --resume``.

Every action is a POST that answers with a redirect to the packet (so a reload does not
repeat it), or with the page again and an error that says what to do.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from slmstack.errors import ConfigError, DataError, InboxError
from slmstack.serve.console.common import (
    FormError,
    acting,
    feedback_of,
    inbox_of,
    known_labels,
    read_form,
    router,
)
from slmstack.serve.console.gate import AGENT_COOKIE, cookie_header
from slmstack.serve.console.render import page
from slmstack.serve.routes.inbox import PacketId
from slmstack.workflows.inbox_feedback import DEFAULT_TASK, check_task
from slmstack.workflows.packet import MAX_ID, NAME_LIMIT, check_text

STATUSES = ("open", "claimed", "resolved", "all")
PER_PAGE = 25
TASKS = ("intent", "sentiment", "faq")  # offered in the picker; any task name is accepted
_NOTICES = {
    "claimed": "You claimed this packet. Reply to the customer, then resolve it.",
    "replied": "Your reply is saved with the packet.",
    "resolved": "Resolved.",
    "labelled": "Resolved, and its text is saved as a training example with your label.",
    "label": "Saved as a training example with your label.",
}
NO_INBOX = (
    "This server has no escalation inbox. Name one under `inbox:` in the serve config "
    "(for example sqlite:///inbox.db), or serve a workflow that escalates, then restart."
)


Anchor = Annotated[int | None, Query(ge=0, le=MAX_ID)]


@router.get("/inbox", response_class=HTMLResponse)
def inbox_list(
    request: Request, status: str = "open", workflow: str = "", q: str = "",
    before: Anchor = None, after: Anchor = None,
) -> HTMLResponse:  # fmt: skip
    """Packets newest first, filtered by status and workflow, searched by text.

    Pages are anchored on ids (``before``: older than the last shown, ``after``: newer
    than the first), so packets that arrive or are claimed meanwhile do not make the next
    page repeat one or skip one, as an offset would.
    """
    feedback = feedback_of(request)
    if feedback is None:
        return page(
            request, "inbox.html", status=404, error=NO_INBOX, packets=[], counts={}, total=0,
            filters={}, workflows=[], pages=0, page_no=1, statuses=STATUSES,
        )  # fmt: skip
    error = None
    if status not in STATUSES:
        error = f"There is no status {status!r}; showing open packets. Pick one of the tabs."
        status = "open"
    filters: dict[str, Any] = {
        "status": None if status == "all" else status, "workflow": workflow or None,
        "query": q or None, "limit": PER_PAGE,
    }  # fmt: skip
    found = feedback.search(**filters, before=before, after=after)
    if not found.packets and (before is not None or after is not None):
        found = feedback.search(**filters)  # past either end: the newest page
    pages = -(-found.total // PER_PAGE)
    shown = found.packets
    older = shown[-1].id if shown and found.newer + len(shown) < found.total else None
    newer = (0 if found.newer <= PER_PAGE else shown[0].id) if found.newer else None  # 0: the top
    return page(
        request, "inbox.html", status=200 if error is None else 422, error=error,
        packets=shown, total=found.total, counts=feedback.counts(),
        filters={"status": status, "workflow": workflow, "q": q},
        workflows=feedback.workflows(), pages=pages,
        page_no=min(found.newer // PER_PAGE + 1, max(pages, 1)), statuses=STATUSES,
        older=older, newer=newer,
    )  # fmt: skip


def _packet_page(
    request: Request, packet_id: int, *, status: int = 200, error: str | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:  # fmt: skip
    inbox, feedback = inbox_of(request), feedback_of(request)
    if inbox is None or feedback is None:
        return page(request, "message.html", status=404, title="No inbox", error=NO_INBOX)
    try:
        packet = inbox.get(packet_id)
    except ConfigError:
        return page(
            request, "message.html", status=404, title=f"No packet {packet_id}",
            error=f"There is no packet {packet_id}. Go back to the inbox and pick one "
            "from the list.",
        )  # fmt: skip
    done = request.query_params.get("done", "")
    return page(
        request, "packet.html", status=status, error=error, notice=_NOTICES.get(done),
        p=packet, replies=feedback.replies(packet_id),
        examples=feedback.examples(packet_id=packet_id), labels=known_labels(request),
        tasks=TASKS, form=form or {}, agent=unquote(request.cookies.get(AGENT_COOKIE, "")),
    )  # fmt: skip


@router.get("/inbox/{packet_id}", response_class=HTMLResponse)
def packet_view(request: Request, packet_id: PacketId) -> HTMLResponse:
    """One packet: text, findings, why it escalated, the trace, replies, actions."""
    return _packet_page(request, packet_id)


def _done(packet_id: int, what: str) -> RedirectResponse:
    return RedirectResponse(f"/console/inbox/{packet_id}?done={what}", status_code=303)


async def _act(request: Request, packet_id: int, action: Any) -> Response:
    """Run ``action(form, who)``; redirect on success, the page with the error otherwise."""
    form: dict[str, str] = {}
    try:
        form = await read_form(request)
        who = acting(request, form)
        done = await run_in_threadpool(action, form, who)  # the database calls block
    except FormError as exc:
        failed: tuple[int, str] | None = (exc.status, _sentence(exc))
    except (InboxError, ConfigError) as exc:  # claimed by another, resolved, no packet
        failed = (409, _sentence(exc))
    except DataError as exc:
        failed = (422, _sentence(exc))
    else:
        failed = None
    if failed is not None:
        return await run_in_threadpool(
            _packet_page, request, packet_id, status=failed[0], error=failed[1], form=form
        )
    response = _done(packet_id, done)
    if not getattr(request.state, "api_key", None) and form.get("who"):
        # Percent-encoded like every console cookie: a name such as "Łukasz" cannot go
        # into a header as it is (a 500, after the action was done).
        remembered = cookie_header(AGENT_COOKIE, form["who"].strip(), request.scope)
        response.headers.append("set-cookie", remembered)
    return response


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _need_inbox(request: Request) -> Any:
    inbox, feedback = inbox_of(request), feedback_of(request)
    if inbox is None or feedback is None:
        raise FormError(NO_INBOX, 404)
    return inbox, feedback


@router.post("/inbox/{packet_id}/claim")
async def claim(request: Request, packet_id: PacketId) -> Response:
    """Take an open packet; refused when someone has it already."""

    def action(form: dict[str, str], who: str) -> str:
        inbox, _ = _need_inbox(request)
        inbox.get(packet_id)
        try:
            inbox.claim(packet_id, who)
        except ConfigError as exc:
            raise InboxError(f"{exc}. Two people cannot work one packet: pick another "
                             "open packet from the inbox") from None  # fmt: skip
        return "claimed"

    return await _act(request, packet_id, action)


@router.post("/inbox/{packet_id}/reply")
async def reply(request: Request, packet_id: PacketId) -> Response:
    """Save a reply to the customer with the packet."""

    def action(form: dict[str, str], who: str) -> str:
        _, feedback = _need_inbox(request)
        feedback.reply(packet_id, form.get("text", ""), who=who)
        return "replied"

    return await _act(request, packet_id, action)


@router.post("/inbox/{packet_id}/resolve")
async def resolve(request: Request, packet_id: PacketId) -> Response:
    """Close a packet with a note; with a label, save its text as a training example."""

    def action(form: dict[str, str], who: str) -> str:
        inbox, feedback = _need_inbox(request)
        note = form.get("note", "").strip()
        if not note:
            raise FormError("write what was done under “Resolution note”, then resolve")
        label = form.get("label", "").strip()
        task = check_task(form.get("task", DEFAULT_TASK) or DEFAULT_TASK)
        if label:  # checked before the packet is closed: a refused label must not leave it resolved
            check_text(label, "label", NAME_LIMIT)
        try:
            inbox.resolve(packet_id, note, who=who)
        except InboxError:  # claimed by someone else; the API's `force` is for supervisors
            owner = inbox.get(packet_id).claimed_by
            raise InboxError(
                f"packet {packet_id} is claimed by {owner!r}, so only they can resolve it; "
                "ask them, or pick another packet"
            ) from None
        if label:
            feedback.save_example(packet_id, label, who=who, task=task)
            return "labelled"
        return "resolved"

    return await _act(request, packet_id, action)


@router.post("/inbox/{packet_id}/label")
async def label(request: Request, packet_id: PacketId) -> Response:
    """Save (or replace) a packet's training label without changing its status."""

    def action(form: dict[str, str], who: str) -> str:
        _, feedback = _need_inbox(request)
        task = check_task(form.get("task", DEFAULT_TASK) or DEFAULT_TASK)
        feedback.save_example(packet_id, form.get("label", ""), who=who, task=task)
        return "label"

    return await _act(request, packet_id, action)


@router.get("/examples", response_class=HTMLResponse)
def examples(request: Request, task: str = "") -> HTMLResponse:
    """The labelled examples agents saved, and how to train on them."""
    feedback = feedback_of(request)
    if feedback is None:
        return page(request, "message.html", status=404, title="No inbox", error=NO_INBOX)
    try:
        rows = feedback.examples(task=task or None)
    except ConfigError as exc:
        return page(request, "message.html", status=422, title="Training examples",
                    error=_sentence(exc))  # fmt: skip
    tasks = sorted({e.task for e in feedback.examples()})
    return page(request, "examples.html", rows=rows, tasks=tasks, task=task)


@router.get("/examples/export.jsonl")
def export_examples(request: Request, task: str = DEFAULT_TASK) -> Response:
    """The examples of ``task`` as JSONL: what ``slmstack inbox export-examples`` writes."""
    feedback = feedback_of(request)
    if feedback is None:
        return PlainTextResponse(NO_INBOX, status_code=404)
    try:
        rows = feedback.examples(task=task)
    except ConfigError as exc:
        return PlainTextResponse(str(exc), status_code=422)
    import json

    body = "".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in rows)
    return Response(
        body, media_type="application/x-ndjson",
        headers={"content-disposition": f'attachment; filename="{task}-examples.jsonl"'},
    )  # fmt: skip


__all__ = ["claim", "inbox_list", "label", "packet_view", "reply", "resolve"]
