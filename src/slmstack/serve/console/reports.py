"""The reports page: spend beside "all to the LLM", escalation rate, latency, CLI reports.

Spend is :func:`~slmstack.costs.report.spend_report` (exact sums in SQL, the LLM line
priced from the same tokens), for the last N days; escalation rate and latency come from
the same ledger's run rows (:mod:`.report_data`). Charts are SVG drawn here
(:mod:`.charts`) with the numbers in tables beside them. CLI reports (``slmstack eval``,
``slmstack cost report --html``, ``slmstack cost compare --html``) are listed from the
config's ``console.reports`` folder and served as they are, sandboxed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from slmstack.costs.ledger import GROUPS
from slmstack.costs.report import money, ratio, spend_report
from slmstack.errors import ConfigError
from slmstack.serve.console import report_data as data
from slmstack.serve.console.charts import Series, line_chart
from slmstack.serve.console.common import router
from slmstack.serve.console.render import page

PERIODS = (7, 30, 90)
REPORT_TYPES = {".html": "text/html", ".json": "application/json", ".md": "text/markdown"}
# A CLI report is a static page with inline styles and base64 plots: it may show them,
# and nothing else (no script, no requests, no forms).
_REPORT_POLICY = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _ledger(request: Request) -> Any:
    state = request.app.state.serve
    if getattr(state, "ledger", None) is not None:
        return state.ledger
    ledgers = state.ledgers() if hasattr(state, "ledgers") else []
    return ledgers[0] if ledgers else None


def report_files(folder: Path | None) -> list[Path]:
    """The report files in ``folder`` (newest first); none when it is unset or missing."""
    if folder is None or not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_file() and p.suffix in REPORT_TYPES]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


@router.get("/reports", response_class=HTMLResponse)
def reports(request: Request, days: int = 30, by: str = "workflow") -> HTMLResponse:
    """Spend by workflow, step, model or day; escalation rate; latency percentiles."""
    config = request.app.state.serve.config
    console = getattr(config, "console", None)
    folder = getattr(console, "reports", None)
    context: dict[str, Any] = {
        "days": days, "by": by, "periods": PERIODS, "groups": GROUPS,
        "files": report_files(folder), "folder": folder, "spend": None,
    }  # fmt: skip
    if days not in PERIODS or by not in GROUPS:
        return page(request, "reports.html", status=422, error=(
            f"Pick a period of {', '.join(map(str, PERIODS))} days and a grouping of "
            f"{', '.join(GROUPS)} (got {days} days, by {by!r})."), **context)  # fmt: skip
    ledger = _ledger(request)
    if ledger is None:
        return page(request, "reports.html", **context)
    until = datetime.now(UTC).date()
    since = until - timedelta(days=days - 1)
    compare_to = getattr(console, "compare_to", "gpt-4")
    try:
        spend = spend_report(ledger, by=by, since=since, until=until, compare_to=compare_to)
    except ConfigError as exc:
        return page(request, "reports.html", status=422, error=f"{exc}.", **context)
    days_list = data.day_range(since, until)
    runs = data.runs_of(ledger.rows(since=since, until=until))
    rates = data.escalation_by_day(runs, days_list)
    labels = [d.isoformat() for d in days_list]
    by_day = {r.key: r for r in spend.daily}
    stack = [float(by_day[x].cost) if x in by_day else 0.0 for x in labels]
    llm = [float(by_day[x].llm_cost or 0) if x in by_day else 0.0 for x in labels]
    context.update(
        spend=spend,
        money=money,
        ratio=ratio,
        spend_chart=line_chart(
            "Spend per day: the stack, and the same tokens all sent to the LLM", labels,
            [Series("this stack", stack), Series(f"all to {compare_to}", llm)],
            fmt=lambda v: money(_decimal(v)),
        ) if any(stack) or any(llm) else None,
        rates=rates,
        rate_chart=line_chart(
            "Share of workflow runs escalated, per day", labels,
            [Series("escalated", [r.rate if r.runs else None for r in rates])],
            fmt=lambda v: f"{100 * v:.0f}%", log=False, y_min=0.0, y_max=1.0,
        ) if any(r.runs for r in rates) else None,
        latency=data.latency_by_target(runs),
        percentiles=data.PERCENTILES,
        latency_chart=line_chart(
            "Run latency per day (p50 and p95)", labels,
            [Series("p50", data.latency_by_day(runs, days_list, 50)),
             Series("p95", data.latency_by_day(runs, days_list, 95))],
            fmt=lambda v: f"{v:,.0f} ms" if v >= 10 or v == 0 else f"{v:.1f} ms", log=False,
        ) if runs else None,
        runs=len(runs),
    )  # fmt: skip
    return page(request, "reports.html", **context)


def _decimal(value: float) -> Any:
    from decimal import Decimal

    return Decimal(str(value))


@router.get("/reports/files/{name}")
def report_file(request: Request, name: str) -> Response:
    """One report file the CLI wrote, served as it is (HTML sandboxed)."""
    console = getattr(request.app.state.serve.config, "console", None)
    folder: Path | None = getattr(console, "reports", None)
    files = {p.name: p for p in report_files(folder)}
    found = files.get(name)  # only names listed: never a path outside the folder
    if found is None:
        return page(request, "message.html", status=404, title="No such report", error=(
            f"There is no report {name!r} in the reports folder. Pick one from the "
            "list on the Reports page."))  # fmt: skip
    return FileResponse(
        found, media_type=REPORT_TYPES[found.suffix],
        headers={"content-security-policy": _REPORT_POLICY},
    )  # fmt: skip


__all__ = ["report_file", "report_files", "reports"]
