"""Templates of the console: one jinja2 environment, autoescaped, over the package's files.

Pages are rendered on the server (no front-end build, nothing fetched from elsewhere);
``static/console.js`` only adds keyboard shortcuts and small conveniences, so every
page and form works without it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmstack.errors import MissingDependencyError

if TYPE_CHECKING:
    import jinja2
    from fastapi import Request
    from fastapi.responses import HTMLResponse

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
SIGN_IN = "Sign in with your API key to use the console."


@functools.cache
def environment() -> jinja2.Environment:
    """The console's jinja2 environment (autoescaped HTML; filters for times and money)."""
    try:
        import jinja2
    except ImportError as exc:
        raise MissingDependencyError("jinja2", "serve", "The console") from exc
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(("html",)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["steps"] = steps
    env.filters["chips"] = chips
    env.filters["ago"] = ago
    env.filters["pct"] = lambda x: "–" if x is None else f"{100 * x:.0f}%"
    env.filters["ms"] = lambda x: (
        "–" if x is None else (f"{x:,.0f} ms" if x >= 10 else f"{x:.1f} ms")
    )
    return env


def when(value: datetime | None) -> str:
    """``2026-12-01 22:58 UTC``, or an empty string."""
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago, for people: ``just now``, ``5 min ago``, ``3 h ago``, ``2 days ago``."""
    if value is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h ago"
    days = seconds // 86400
    return f"{days:.0f} day{'s' if days != 1 else ''} ago"


MAX_DEPTH = 40  # levels of a trace shown; a deeper (hand-built) one would exhaust the stack


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and value == value else None  # NaN: not a number to show


def steps(nodes: Any, depth: int = 0) -> list[dict[str, Any]]:
    """A trace (JSON) in the one shape the templates read, whatever its nodes hold.

    A packet's trace is whatever was filed: a workflow's own, or one built by hand or
    imported, where a node may lack its name, hold a decision as a plain string, or not be
    an object at all. Each missing part is shown as missing, never as a 500.
    """
    if not isinstance(nodes, list) or depth >= MAX_DEPTH:
        return []
    shaped = []
    for node in nodes:
        if not isinstance(node, dict):
            node = {"name": str(node)}
        output = node.get("output")
        if not isinstance(output, dict):
            output = {"text": output} if output not in (None, "", [], {}) else {}
        decision = node.get("decision")
        if not isinstance(decision, dict):
            decision = {"taken": decision} if decision not in (None, "", [], {}) else {}
        tokens = node.get("tokens")
        tokens = tokens if isinstance(tokens, dict) else {}
        shaped.append({
            "name": str(node.get("name") or "?"), "kind": str(node.get("kind") or ""),
            "output": {
                "label": str(output.get("label") or ""), "text": str(output.get("text") or ""),
                "confidence": _number(output.get("confidence")),
                "abstained": str(output.get("abstained") or ""),
            },
            "decision": {"taken": str(decision.get("taken") or "?"),
                         "why": str(decision.get("why") or "")} if decision else None,
            "latency_ms": _number(node.get("latency_ms")),
            "tokens": {"input": _number(tokens.get("input")),
                       "output": _number(tokens.get("output"))},
            "children": steps(node.get("children"), depth + 1),
        })  # fmt: skip
    return shaped


def chips(entities: Any) -> list[tuple[str, str]]:
    """A packet's entities as ``(label, text)`` pairs; a part it lacks is an empty string."""
    pairs = []
    for entity in entities if isinstance(entities, list | tuple) else ():
        if isinstance(entity, dict):
            pairs.append((str(entity.get("label") or ""), str(entity.get("text") or "")))
        else:
            pairs.append(("", str(entity)))
    return pairs


def page(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with the request's console context as an HTML response."""
    from fastapi.responses import HTMLResponse

    serve = request.app.state.serve
    context.setdefault("error", None)
    context.setdefault("notice", None)
    html = (
        environment()
        .get_template(template)
        .render(
            request=request,
            path=request.url.path,
            csrf=getattr(request.state, "csrf", ""),
            who=getattr(request.state, "api_key", None),
            auth=serve.keys is not None,
            **context,
        )
    )
    return HTMLResponse(html, status_code=status)


@dataclass(frozen=True)
class LoginPage:
    """The sign-in page, and the Content-Security-Policy that admits its inline CSS."""

    html: str
    policy: str


@functools.cache
def _css() -> tuple[str, str]:
    css = (STATIC / "console.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return css, f"'sha256-{digest}'"


def login_page(*, message: str, next_path: str, csrf: str) -> LoginPage:
    """The sign-in form, self-contained: its CSS inline, so that it needs no key to load."""
    from slmstack.serve.console.gate import POLICY

    css, digest = _css()
    html = (
        environment()
        .get_template("login.html")
        .render(
            message=message,
            next_path=next_path,
            csrf=csrf,
            css=css,
            level="info" if message == SIGN_IN else "error",
        )
    )
    policy = POLICY.replace("style-src 'self'", f"style-src {digest}")
    return LoginPage(html, policy)


__all__ = [
    "SIGN_IN",
    "STATIC",
    "LoginPage",
    "ago",
    "chips",
    "environment",
    "login_page",
    "page",
    "steps",
    "when",
]
