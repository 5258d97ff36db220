"""The console's own routes: its home, sign-in and sign-out, and its static files.

Sign-in itself happens in :class:`~slmstack.serve.console.gate.ConsoleGate` (before the
API's auth); the routes here answer only requests that are already allowed in.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from slmstack.serve.console import inbox_pages, playground, reports  # noqa: F401 - their routes
from slmstack.serve.console.common import FormError, read_form, router
from slmstack.serve.console.gate import LOGIN, SESSION_COOKIE, cookie_header, safe_next
from slmstack.serve.console.render import STATIC

_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


@router.get("")
def home() -> RedirectResponse:
    """The console opens on the inbox."""
    return RedirectResponse("/console/inbox", status_code=303)


@router.get("/login")
def login(request: Request) -> RedirectResponse:
    """Signed in already (or no keys): on to the console."""
    return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)


@router.post("/login")
def login_post(request: Request) -> RedirectResponse:
    """Signed in already (or no keys): on to the console."""
    return RedirectResponse("/console/inbox", status_code=303)


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the key in this browser."""
    try:
        await read_form(request)
    except FormError as exc:
        return PlainTextResponse(str(exc), status_code=exc.status)
    where = LOGIN if request.app.state.serve.keys is not None else "/console/inbox"
    response = RedirectResponse(where, status_code=303)
    response.headers.append(
        "set-cookie", cookie_header(SESSION_COOKIE, "", request.scope, max_age=0)
    )
    return response


@router.get("/static/{name}")
def static(name: str) -> Response:
    """``console.css`` and ``console.js``: the only files, named, never a path."""
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in _TYPES or not path.is_file():
        return PlainTextResponse(f"no static file {name!r}", status_code=404)
    return Response(path.read_bytes(), media_type=_TYPES[path.suffix])


__all__ = ["router"]
