"""What the console's routes share: the router, form parsing, CSRF, who is acting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import Response

from slmstack.errors import DataError
from slmstack.serve.console.gate import CSRF_FIELD, csrf_ok, origin_problem
from slmstack.workflows.packet import NAME_LIMIT

if TYPE_CHECKING:
    from slmstack.workflows.inbox import Inbox
    from slmstack.workflows.inbox_feedback import InboxFeedback

# Not in the OpenAPI spec: the console is pages for people, not part of the HTTP API.
router = APIRouter(prefix="/console", include_in_schema=False)

MAX_FORM_BYTES = 200_000


class FormError(DataError):
    """A console form that cannot be accepted; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


async def read_form(request: Request) -> dict[str, str]:
    """The URL-encoded form of a POST, checked for its CSRF token.

    Raises:
        FormError: a body over ``MAX_FORM_BYTES`` (413), or a missing or wrong CSRF
            token from a browser (403).
    """
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise FormError(
            f"the form holds {len(body):,} bytes, more than {MAX_FORM_BYTES:,}; shorten the text",
            413,
        )
    try:  # strict: a replaced byte would end up in a note or a training label
        pairs = parse_qs(body.decode("ascii"), keep_blank_values=True, errors="strict")  # %E9
    except (UnicodeDecodeError, ValueError):
        raise FormError(
            "the form is not UTF-8 text; send it from the console's page", 400
        ) from None
    form = {key: values[0] for key, values in pairs.items()}
    if getattr(request.state, "console_browser", True) and not csrf_ok(
        request.scope, form.get(CSRF_FIELD)
    ):
        why = origin_problem(request.scope)
        raise FormError(
            f"the form was refused: {why}" if why else
            "this form had expired (or was sent from another site); reload the page and "
            "send it again",
            403,
        )  # fmt: skip
    return form


def acting(request: Request, form: dict[str, str]) -> str:
    """Who acts: the key's name when the server has keys, else the form's ``who``.

    Raises:
        FormError: no keys and no name given.
    """
    name: str | None = getattr(request.state, "api_key", None)
    if name:
        return name
    given = form.get("who", "").strip()
    if not given:
        raise FormError("enter your name under “Your name”, so that others see who did this")
    if len(given) > NAME_LIMIT:
        raise FormError(f"your name is over {NAME_LIMIT} characters; shorten it")
    return given


def inbox_of(request: Request) -> Inbox | None:
    """The server's inbox, or ``None`` when it has none."""
    inbox: Inbox | None = request.app.state.serve.inbox
    return inbox


def feedback_of(request: Request) -> InboxFeedback | None:
    """Replies and examples in the server's inbox database (opened once per app)."""
    from slmstack.workflows.inbox_feedback import InboxFeedback

    inbox = inbox_of(request)
    if inbox is None:
        return None
    cache: dict[int, Any] | None = getattr(request.app.state, "console_feedback", None)
    if cache is None:
        cache = request.app.state.console_feedback = {}
    if id(inbox) not in cache:
        cache[id(inbox)] = InboxFeedback(inbox)
    found: InboxFeedback = cache[id(inbox)]
    return found


def invalid_address(request: Request, errors: Sequence[Any]) -> Response:
    """422 as a console page: the address holds a value of the wrong type (``?days=abc``).

    A person at a browser reads this instead of FastAPI's JSON list of problems.
    """
    from slmstack.serve.console.render import page

    where = {"query": " in the address", "path": " in the path"}
    said = []
    for e in errors:
        loc = [str(part) for part in e.get("loc", ())] or ["", "value"]
        said.append(f"{'.'.join(loc[1:]) or 'value'}{where.get(loc[0], '')}: {e.get('msg', '')}")
    problems = "; ".join(said)
    return page(
        request, "message.html", status=422, title="This address cannot be shown",
        error=f"{problems}. Correct the address, or go back to the inbox and follow a link.",
    )  # fmt: skip


def known_labels(request: Request) -> list[str]:
    """Labels the served classifiers know, for the corrected-label picker."""
    labels: set[str] = set()
    for skill in getattr(request.app.state.serve, "skills", {}).values():
        labels.update(str(c) for c in getattr(skill, "classes_", ()) or ())
    return sorted(labels)


__all__ = [
    "FormError",
    "acting",
    "feedback_of",
    "inbox_of",
    "invalid_address",
    "known_labels",
    "read_form",
    "router",
]
