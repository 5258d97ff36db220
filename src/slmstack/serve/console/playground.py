"""The playground: run a served workflow on one text and see every step.

The run goes through the same batcher as ``POST /v1/workflows/{name}/run`` (so it is
batched with live traffic, recorded in the ledger under the signed-in key, and an
escalation files a real inbox packet: the page says so). Each step's cost is its own
ledger row's, read back by the run's request id; without a ledger only the total shows.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from slmstack.costs.prices import from_nano
from slmstack.costs.report import money
from slmstack.errors import ConfigError, SlmstackError
from slmstack.serve.console.common import FormError, read_form, router
from slmstack.serve.console.render import page
from slmstack.serve.http_errors import headers_of, shown, status_of
from slmstack.serve.limits import check_input

MAX_TEXT = 20_000
_log = logging.getLogger("slmstack.serve")


def _workflows(request: Request) -> list[str]:
    return sorted(getattr(request.app.state.serve, "workflows", {}))


@router.get("/playground", response_class=HTMLResponse)
def playground(request: Request, workflow: str = "") -> HTMLResponse:
    """The form: a workflow picker and a text box."""
    names = _workflows(request)
    return page(request, "playground.html", workflows=names,
                chosen=workflow or (names[0] if names else ""), text="", run=None)  # fmt: skip


@router.post("/playground", response_class=HTMLResponse)
async def playground_run(request: Request) -> HTMLResponse:
    """Run the chosen workflow on the text; show route, steps, confidence, latency, cost."""
    names = _workflows(request)
    form: dict[str, str] = {}
    try:
        form = await read_form(request)
        name, text = form.get("workflow", ""), form.get("text", "")
        if name not in names:
            served = ", ".join(names) or "none"
            raise FormError(f"pick a workflow from the list (this server runs: {served})")
        if not text.strip():
            raise FormError("type a customer message under “Text” to run the workflow on")
        check_input(text, "the text")
        if len(text) > MAX_TEXT:
            raise FormError(f"the text has {len(text):,} characters; keep it under {MAX_TEXT:,}")
        run = await _run(request, name, text)
    except FormError as exc:
        return _again(request, names, form, str(exc), exc.status)
    except SlmstackError as exc:  # not served, overloaded, deadline, a backend failed
        failed = _again(request, names, form, f"The run failed: {shown(exc, 'the playground')}. "
                        "Try again, or check the server's log if it keeps failing.",
                        status_of(exc))  # fmt: skip
        failed.headers.update(headers_of(exc))
        return failed
    return page(request, "playground.html", workflows=names, chosen=name, text=text, run=run)


def _again(request: Request, names: list[str], form: dict[str, str], error: str,
           status: int) -> HTMLResponse:  # fmt: skip
    error = error[:1].upper() + error[1:] + ("" if error.endswith(".") else ".")
    return page(request, "playground.html", status=status, error=error, workflows=names,
                chosen=form.get("workflow", ""), text=form.get("text", ""), run=None)  # fmt: skip


async def _run(request: Request, name: str, text: str) -> dict[str, Any]:
    from starlette.concurrency import run_in_threadpool

    state = request.app.state.serve
    if not getattr(state, "ready", False):
        raise FormError("the server is still loading its models; try again in a moment", 503)
    batcher = state.batcher("workflow", name)
    _, calls = state.calls([text], getattr(request.state, "api_key", None))
    (answer,) = await state.submit(batcher, calls)
    result = answer.result
    costs = await run_in_threadpool(_step_costs, state, calls[0].key)
    steps: list[dict[str, Any]] = []
    for root in result.trace:
        _flatten(root.to_dict(), 0, costs or {}, steps)
    out = result.to_dict(trace=True)
    return {
        "status": result.status,
        "answer": result.answer,
        "route": result.route,
        "escalation": out.get("escalation"),
        "latency_ms": result.latency_ms,
        "cost": usd(from_nano(answer.cost_nusd)),
        "per_million": money(from_nano(answer.cost_nusd) * 1_000_000),
        "tokens": result.usage,
        "steps": steps,
        "trace": out["trace"],
        "ledger": bool(costs),
        "ledger_down": costs is None,
    }


def usd(amount: Decimal) -> str:
    """Dollars for a single run: every digit down to the nano-dollar, never ``4.00e-9``."""
    if 0 < abs(amount) < Decimal("0.000001"):
        return "$" + f"{amount:.9f}".rstrip("0").rstrip(".")
    return money(amount)


def _step_costs(state: Any, request_id: str) -> dict[str, int] | None:
    """Each step's cost (nano-dollars) by path, from the ledger rows of ``request_id``.

    ``None`` when a ledger cannot be read now: the run is done (its rows wait in memory,
    see :mod:`slmstack.serve.state`), so the page shows it without per-step costs.
    """
    found: dict[str, int] = {}
    for ledger in state.ledgers():
        try:
            rows = ledger.rows(request_id=request_id)  # flushes first, which may fail
        except ConfigError as exc:
            _log.warning("the playground shows no per-step cost: %s", exc)
            return None
        for row in rows:
            if row.path:
                found[row.path] = row.cost_nusd
    return found


def _flatten(node: dict[str, Any], depth: int, costs: dict[str, int],
             out: list[dict[str, Any]]) -> None:  # fmt: skip
    output = node.get("output") or {}
    shown = output.get("text") or output.get("label") or ""
    if not shown and output.get("spans"):
        shown = ", ".join(f"{s.get('label')}: {s.get('text')}" for s in output["spans"])
    cost = costs.get(node["path"])
    out.append({
        "depth": depth, "name": node["name"], "kind": node["kind"], "path": node["path"],
        "output": shown, "confidence": output.get("confidence"),
        "decision": node.get("decision"), "latency_ms": node.get("latency_ms"),
        "tokens": node.get("tokens", {}),
        "cost": None if cost is None else usd(from_nano(cost)),
    })  # fmt: skip
    for child in node.get("children", ()):
        _flatten(child, depth + 1, costs, out)


__all__ = ["playground", "playground_run"]
