"""The migration report as one self-contained HTML page: inline CSS, an inline SVG chart.

The page is opened from disk or attached to a ticket, so nothing in it loads from the
network (no CDN, no script, no web font). It is rendered by jinja2 with autoescaping on,
so text from the traffic (task templates, promotion reasons) cannot inject markup. The
chart is drawn here as SVG, in the console's manner (:mod:`slmstack.serve.console.charts`:
a ``viewBox`` that CSS stretches, a ``<title>`` and ``<desc>`` for screen readers, the
same numbers in a table), as stacked bars: calls per hour or day, the LLM's below and the
students' above, so the bar's height is the volume and its top the share answered locally.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from slmstack.costs.prices import from_nano
from slmstack.errors import MissingDependencyError
from slmstack.proxy.report import MigrationReport

if TYPE_CHECKING:
    import jinja2

TEMPLATES = Path(__file__).parent / "templates"
WIDTH, HEIGHT = 960, 280
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 16, 36


def _step(high: int) -> int:
    """A round tick step giving at most about five ticks up to ``high``."""
    raw = max(1.0, high / 5)
    magnitude = 10 ** math.floor(math.log10(raw))
    return int(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))


def stacked_bars(title: str, buckets: Sequence[tuple[str, int, int]], names: Sequence[str]) -> str:
    """An accessible SVG of ``(label, bottom, top)`` counts as stacked bars (escaped markup)."""
    if not buckets:
        return '<p class="muted">No calls recorded yet.</p>'
    high = max(1, *(a + b for _, a, b in buckets))
    step = _step(high)
    top_tick = step * math.ceil(high / step)
    span_x, span_y = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = span_x / len(buckets)
    bar = max(1.0, slot * 0.7)
    desc = "; ".join(f"{lab}: {names[0]} {a}, {names[1]} {b}" for lab, a, b in buckets)

    def y(v: float) -> float:
        return TOP + span_y * (1 - v / top_tick)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'preserveAspectRatio="xMidYMid meet" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>"
    ]
    for tick in range(0, top_tick + 1, step):
        ty = y(tick)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
            f'<text class="axis" x="{LEFT - 8}" y="{ty + 4:.1f}" text-anchor="end">{tick}</text>'
        )
    every = max(1, math.ceil(len(buckets) / 8))
    for i, (label, bottom, top) in enumerate(buckets):
        x = LEFT + slot * i + (slot - bar) / 2
        for n, (low, value) in enumerate(((0, bottom), (bottom, top))):
            if value:
                parts.append(
                    f'<rect class="bar series-{n}" x="{x:.1f}" y="{y(low + value):.1f}" '
                    f'width="{bar:.1f}" height="{y(low) - y(low + value):.1f}"/>'
                )
        if i % every == 0 or i == len(buckets) - 1:
            parts.append(
                f'<text class="axis" x="{x + bar / 2:.1f}" y="{HEIGHT - 12}" '
                f'text-anchor="middle">{escape(label[5:])}</text>'
            )
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch series-{n}" aria-hidden="true"></span>{escape(name)}</li>'
        for n, name in enumerate(names)
    )
    return f'<figure class="chart-box">{"".join(parts)}<ul class="legend">{legend}</ul></figure>'


@functools.cache
def _environment() -> jinja2.Environment:
    try:
        import jinja2
    except ImportError as exc:
        raise MissingDependencyError("jinja2", "proxy", "The migration report") from exc
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["usd"] = _usd
    env.filters["pct"] = lambda x: "–" if x is None else f"{100 * x:.1f}%"
    env.filters["ms"] = lambda x: "–" if x is None else f"{x:,.1f} ms"
    env.filters["num"] = lambda x: "–" if x is None else f"{x:,.3f}"
    return env


def _usd(value: Decimal | int | None) -> str:
    """Dollars to the cent from $1, else to four significant digits (small runs cost little)."""
    if value is None:
        return "–"
    dollars = from_nano(value) if isinstance(value, int) else value
    sign, dollars = ("-" if dollars < 0 else ""), abs(dollars)
    if not dollars or dollars >= 1:
        return f"{sign}${dollars:,.2f}"
    places = 3 - math.floor(math.log10(dollars))
    return f"{sign}${dollars:.{places}f}"


def render_html(report: MigrationReport, *, now: datetime | None = None) -> str:
    """The report as a complete, self-contained HTML document."""
    import markupsafe

    chart = stacked_bars(
        f"Calls per {report.unit}, by who answered", report.buckets, ("LLM", "student")
    )
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return (
        _environment()
        .get_template("migration_report.html")
        .render(r=report, chart=markupsafe.Markup(chart), generated=when)
    )


__all__ = ["render_html", "stacked_bars"]
