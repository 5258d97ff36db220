"""Request limits: body size (413), item count and text checks (422).

The body limit is ASGI middleware that counts the bytes as they stream in, rather than
trusting ``Content-Length``: a chunked upload has none, and a client may lie. A declared
length over the limit is refused before a byte is read; otherwise the body is read up to
the limit and the request refused (413) the moment it passes it, so a 10 GB upload costs
the server at most ``max_body_bytes`` of memory. The body read is handed to the app as
one message (what FastAPI does with it anyway: it parses JSON from the whole body).

:func:`texts_of` checks what a prediction request asks for: one ``text`` or a list of
``texts``, each a non-empty string that can be encoded as UTF-8 (JSON allows lone
surrogates; a tokenizer does not), at most ``max_items`` of them. Each problem is a
:class:`~slmstack.errors.DataError`, which the app answers with 422 and the message.

The per-request deadline (504) is the batcher's (``MicroBatcher.submit(deadline=...)``,
see :meth:`slmstack.serve.state.ServeState.submit`): a request whose items have not run
by then is answered 504 and its items are not run.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slmstack.errors import DataError
from slmstack.serve.asgi import error_body

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
CLIENT_GONE = "slmstack.client_gone"  # set in the scope when the client left mid-upload


class BodyLimitMiddleware:
    """Refuse (413) a request whose body is larger than ``limit()`` bytes.

    Args:
        app: the ASGI app inside.
        limit: the limit in bytes, read per request (the config may be set after the
            middleware is built).
    """

    def __init__(self, app: ASGIApp, *, limit: Callable[[Scope], int]):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body up to the limit, then hand it to the app (or answer 413)."""
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(scope, send, limit, f"its Content-Length is {declared}")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope[CLIENT_GONE] = True  # metrics count it as 499, not as a 500
                return  # the client went away: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(scope, send, limit, f"more than {limit} bytes were sent")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as usual

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before us
    return None


async def _too_large(scope: Scope, send: Send, limit: int, what: str) -> None:
    detail = (
        f"the request body is too large: {what}, and this server accepts at most {limit} "
        "bytes (limits.max_body_bytes); send fewer texts per request"
    )
    body = error_body(scope, 413, detail)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),  # the rest of the body is not read
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def texts_of(text: str | None, texts: list[str] | None, *, max_items: int) -> list[str]:
    """The texts a request asks for, checked.

    Raises:
        DataError: neither or both of ``text`` and ``texts``; no texts; more than
            ``max_items``; an empty text; a text that is not valid Unicode or holds NUL.
    """
    if (text is None) == (texts is None):
        raise DataError(
            'send either "text" (one string) or "texts" (a list of strings)'
            + (", not both" if text is not None else "")
        )
    items = [text] if text is not None else list(texts or [])
    if not items:
        raise DataError('"texts" is empty; send at least one text')
    if len(items) > max_items:
        raise DataError(
            f'"texts" has {len(items)} items; this server takes at most {max_items} per '
            "request (limits.max_items): split it into several requests"
        )
    field = "text" if text is not None else "texts"
    for i, item in enumerate(items):
        check_input(item, field if text is not None else f"{field}[{i}]")
    return items


def check_input(text: str, where: str) -> str:
    """``text``, or a DataError naming ``where``: blank, not valid Unicode, or holding NUL.

    Every route that takes a text checks it here (predict, run, chat, the console's
    playground): a NUL would reach the inbox or the ledger, and PostgreSQL refuses it.
    """
    if not text.strip():
        raise DataError(f"{where} is empty; send text to run on")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(
            f"{where} is not valid Unicode (it holds a lone surrogate, such as \\ud800); "
            "send UTF-8 text"
        ) from None
    if "\x00" in text:
        raise DataError(f"{where} holds a NUL character (\\u0000); remove it")
    return text


__all__ = ["CLIENT_GONE", "BodyLimitMiddleware", "check_input", "texts_of"]
